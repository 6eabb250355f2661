"""Training the bi-encoder: the contrastive loss falls on its groups, and activation checkpointing
leaves the gradients as they were."""

from test_retrieval import PASSAGES, minilm_folder


def test_contrastive_training_lowers_the_loss_on_its_groups():
    import torch
    from omegaconf import OmegaConf

    from chipadapt.modules.bi_encoder import BiEncoderModule
    from chipadapt.retrieval.datamodule import RetrieverDataModule
    from chipadapt.retrieval.encoder import TextEncoder

    torch.manual_seed(0)
    groups = [
        {
            "query": f"what does module {name} do",
            "positive_passages": [{"docid": name, "text": text}],
            "negative_passages": [{"docid": "n", "text": "An unrelated note about the cafeteria menu."}],
        }
        for name, text in [
            ("router", PASSAGES[0].text),
            ("cts", PASSAGES[1].text),
            ("pdn", PASSAGES[2].text),
            ("dpl", PASSAGES[3].text),
        ]
    ]
    encoder = TextEncoder(minilm_folder(), "mean", "", "", 32, 64)
    dm = RetrieverDataModule(groups, [], encoder, n_passages=2, batch_size=4, seed=0, positive="first")
    module = BiEncoderModule(encoder, 2, 0.05, OmegaConf.create({}), gradient_checkpointing=False)
    module.setup("fit")
    batch = dm.collate([dm.train_set[i] for i in range(4)])
    opt = torch.optim.AdamW(encoder.parameters(), lr=5e-5)
    losses = []
    for _ in range(4):
        q, p = module(batch)
        loss = module.loss_fn(q / 0.05, p)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_gradient_checkpointing_gives_the_same_gradients():
    """retriever.train.gradient_checkpointing recomputes activations; the gradients must not change."""
    import torch
    from omegaconf import OmegaConf

    from chipadapt.modules.bi_encoder import BiEncoderModule
    from chipadapt.retrieval.encoder import TextEncoder

    grads = {}
    for checkpointing in (False, True):
        encoder = TextEncoder(minilm_folder(), "mean", "", "", 32, 64)
        encoder.model.train()  # dropout on: checkpointing must replay the same masks
        module = BiEncoderModule(encoder, 1, 0.05, OmegaConf.create({}), gradient_checkpointing=checkpointing)
        module.setup("fit")
        assert encoder.model.is_activation_checkpointing is checkpointing
        torch.manual_seed(0)
        q = encoder(**encoder.tokenize(["how are clock buffers placed", "power grid straps"], True))
        p = encoder(**encoder.tokenize([PASSAGES[1].text, PASSAGES[2].text], False))
        module.loss_fn(q / 0.05, p).backward()
        grads[checkpointing] = encoder.model.encoder.layer[0].attention.self.query.weight.grad.clone()
    assert grads[False].abs().sum() > 0
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-4, atol=1e-6)


def test_a_model_without_checkpointing_support_names_the_key(monkeypatch):
    import pytest
    from omegaconf import OmegaConf

    from chipadapt.errors import ChipadaptError
    from chipadapt.modules.bi_encoder import BiEncoderModule
    from chipadapt.retrieval.encoder import TextEncoder

    encoder = TextEncoder(minilm_folder(), "mean", "", "", 32, 64)
    monkeypatch.setattr(type(encoder.model), "supports_gradient_checkpointing", False)  # as some classes declare
    with pytest.raises(ChipadaptError, match=r"retriever.train.gradient_checkpointing=true: BertModel does not"):
        BiEncoderModule(encoder, 1, 0.05, OmegaConf.create({}), gradient_checkpointing=True)
