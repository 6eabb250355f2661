"""The overrides of a one-step `stage=retriever` run on the sample docs: the smallest run that builds passages,
makes ICT queries, holds some out and trains (tests of the stage's records and reruns)."""


def retriever_overrides(encoder, docs, *extra) -> list[str]:
    return [
        "stage=retriever",
        f"retriever.encoder.path={encoder}",
        "passages=sample_docs",
        f"passages.sources.kestrel.path={docs}",
        "retriever.synthetic.method=ict",
        "retriever.synthetic.num_samples=16",
        "retriever.synthetic.min_passage_chars=100",
        "retriever.evaluate_after=false",
        "retriever.train.batch_size=4",
        "retriever.heldout_fraction=0.2",
        "trainer.max_steps=1",
        "callbacks.progress=null",
        *extra,
    ]


def ict_overrides(encoder, *extra) -> list[str]:
    """A `stage=retriever` run on the sample docs as shipped: 30 ICT queries, 20% held out, batches of 4 (2 steps
    an epoch), no hand-written queries."""
    return [
        "stage=retriever",
        f"retriever.encoder.path={encoder}",
        "passages=sample_docs",
        "retriever.synthetic.method=ict",
        "retriever.synthetic.num_samples=30",
        "retriever.synthetic.min_passage_chars=100",
        "retriever.eval_queries=null",
        "retriever.train.batch_size=4",
        "retriever.heldout_fraction=0.2",
        "callbacks.progress=null",
        *extra,
    ]
