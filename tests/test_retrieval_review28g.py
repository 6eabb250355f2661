"""Review of the retrieval trial fixes (2026-12-07): gold ids naming a dropped duplicate, a run folder
inside the docs folder, the cleaning report recorded with the figures, redaction rules in the passages
record, the key named when a cleaning setting is missing, redacted evidence, and cut-off index builds of
passages no longer indexed."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONF, ROOT, write_jsonl
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.queries import gold_without_evidence, read_queries

CLEAN = {"redact": True, "drop_duplicates": True, "keep_machine_like": False, "undecodable_share": 0.05}
PLACER = "# Zephyr placer\n\nThe zephyr placer spreads cells by density and then legalizes rows in a sweep.\n"


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "zephyr_placer.md").write_text(PLACER)
    (tmp_path / "docs" / "sub" / "zephyr_placer_copy.md").write_text(PLACER)
    (tmp_path / "docs" / "routing.md").write_text(
        "# Routing\n\nThe detailed router fixes shorts after global routing.\n"
    )
    return tmp_path / "docs"


def build(docs, **changes):
    return OmegaConf.create(
        {
            "sources": {"docs": {"path": str(docs)}},
            "max_chars": 512,
            "min_chars": 64,
            "overlap_chars": 0,
            "context": False,
            **CLEAN,
            **changes,
        }
    )


def task(tmp_path, docs, **changes):
    from chipadapt.eval.tasks.retrieval import RetrievalTask

    settings = dict(
        passages=None, build=build(docs), queries=str(tmp_path / "q.jsonl"), split="all",
        encoders=OmegaConf.create({}), dense=OmegaConf.create({}), hybrid=None,
        bm25=OmegaConf.create({"k1": 1.5, "b": 0.75, "stemmer": "english", "stopwords": "en", "context": False}),
        fusion=None, ks=[1], mrr_k=10, limit=None, index_dir=None, misses_file=None, misses_k=1,
    )  # fmt: skip
    return RetrievalTask(**{**settings, **changes})


def test_a_gold_id_naming_a_dropped_duplicate_is_scored_as_the_kept_passage(tmp_path, docs, caplog):
    write_jsonl(
        tmp_path / "q.jsonl",
        [{"id": "q1", "query": "zephyr placer density", "positive_ids": ["docs:sub/zephyr_placer_copy.md#0"]}],
    )
    with caplog.at_level(logging.WARNING):
        results = task(tmp_path, docs).run()
    assert "'docs:sub/zephyr_placer_copy.md#0' names a passage dropped as an exact duplicate of " in caplog.text
    assert results["bm25"]["hit@1"] == 1.0  # scored against docs:zephyr_placer.md#0, the same text
    # The cleaning is recorded with the figures it shaped.
    pairs = [["docs:sub/zephyr_placer_copy.md#0", "docs:zephyr_placer.md#0"]]  # [dropped, kept]
    assert results["passages_cleaning"]["duplicates"] == pairs


def test_an_unknown_gold_id_names_the_folders_the_passages_were_built_from(tmp_path, docs):
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "query": "placer", "positive_ids": ["docs:nope.md#0"]}])
    with pytest.raises(ChipadaptError, match=rf"'docs:nope.md#0' is not among the 2 passages built from {docs}$"):
        task(tmp_path, docs).run()


def test_the_retriever_stage_reads_a_dropped_duplicate_gold_id_as_the_kept_one(tmp_path):
    from chipadapt.retrieval.compare_encoders import QuerySet, with_known_passages
    from chipadapt.retrieval.queries import Query

    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "query": "placer", "positive_ids": ["b#0", "a#0"]}])
    questions = QuerySet([Query("q1", "placer", ("b#0", "a#0"))], {"file": str(tmp_path / "q.jsonl")})
    resolved = with_known_passages(questions, {"a#0"}, "among the 1 passages built from D", {"b#0": "a#0"})
    assert resolved.queries[0].positive_ids == ("a#0",)


def test_a_missing_cleaning_key_is_named_under_the_section_that_lacks_it(docs):
    from chipadapt.retrieval.build import load_passages

    lacking = {k: v for k, v in OmegaConf.to_container(build(docs)).items() if k != "redact"}
    with pytest.raises(ChipadaptError, match=r"^eval.retrieval.build.redact: not set"):
        load_passages(None, lacking, "eval.retrieval.build")


def test_evidence_quoting_a_redacted_secret_is_found_in_the_redacted_passage(tmp_path, caplog):
    write_jsonl(
        tmp_path / "q.jsonl",
        [{"id": "q1", "query": "who", "positive_ids": ["d#0"], "evidence": "mail ops@kestrel.example now"}],
    )
    from chipadapt.curation.redaction import redact

    passages = [Passage("d#0", redact("To escalate, mail ops@kestrel.example now.")[0], "d")]
    with caplog.at_level(logging.WARNING):
        assert gold_without_evidence(read_queries(tmp_path / "q.jsonl"), passages, "q.jsonl") == []
    assert "edited since" not in caplog.text


def test_redaction_rules_are_in_the_passages_record_when_redacting(docs):
    from chipadapt.code_versions import REDACTION_VERSION
    from chipadapt.retrieval.built_inputs import passages_inputs

    assert passages_inputs(OmegaConf.to_container(build(docs)))["redaction"] == REDACTION_VERSION
    assert "redaction" not in passages_inputs(OmegaConf.to_container(build(docs, redact=False)))


def test_the_retriever_stage_records_its_cleaning_beside_the_passages(tmp_path, docs):
    from chipadapt.io.built_from import record_path
    from chipadapt.stages import retriever as stage

    cfg = OmegaConf.create({"retriever": {"passages": None}, "passages": build(docs), "overwrite": False})
    out = tmp_path / "run"
    out.mkdir()
    passages, cleaning = stage.stage_passages(cfg, out, None)
    assert cleaning["duplicates_dropped"] == 1 and len(passages) == 2
    record = json.loads(record_path(out / "passages.jsonl").read_text())
    assert record["cleaning"] == cleaning
    assert stage.stage_passages(cfg, out, None)[1] == cleaning  # reused: the report read from the record


def compose(config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    "config_name,overrides,key",
    [
        (
            "evaluate",
            [
                "eval=[retrieval]",
                "passages@eval.retrieval.build=folder",
                "eval.retrieval.build.sources.docs.path={docs}",
            ],
            "eval.retrieval.build.sources.docs.path",
        ),
        (
            "evaluate",
            [
                "eval=[rag_qa]",
                "model.path=m",
                "passages@eval.rag_qa.retrieval.build=folder",
                "eval.rag_qa.retrieval.build.sources.docs.path={docs}",
            ],
            "eval.rag_qa.retrieval.build.sources.docs.path",
        ),  # fmt: skip
        (
            "chat",
            [
                "model.path=m",
                "retrieval=openroad",
                "passages@retrieval.build=folder",
                "retrieval.build.sources.docs.path={docs}",
            ],
            "retrieval.build.sources.docs.path",
        ),  # fmt: skip
        (
            "train",
            ["stage=retriever", "passages=folder", "passages.sources.docs.path={docs}"],
            "passages.sources.docs.path",
        ),
    ],
)
def test_a_run_folder_inside_the_docs_folder_is_found_before_hydra_writes(docs, config_name, overrides, key):
    from chipadapt.run_folder_guard import inside_an_input

    cfg = compose(config_name, [o.format(docs=docs) for o in overrides])
    assert inside_an_input(docs / "run", cfg) == (key, str(docs), "lies inside")
    assert inside_an_input(docs.parent / "run", cfg) is None


def test_evaluate_into_the_docs_folder_is_refused_leaving_nothing_there(tmp_path, docs):
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "query": "placer", "positive_ids": ["docs:zephyr_placer.md#0"]}])
    before = sorted(p.relative_to(docs) for p in docs.rglob("*"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), "eval=[retrieval]", "passages@eval.retrieval.build=folder",
         f"eval.retrieval.build.sources.docs.path={docs}", f"eval.retrieval.queries={tmp_path / 'q.jsonl'}",
         f"hydra.run.dir={docs / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"lies inside eval.retrieval.build.sources.docs.path ({docs})" in done.stderr
    assert sorted(p.relative_to(docs) for p in docs.rglob("*")) == before  # no .hydra/, log or manifest


def fingerprint(passages: str) -> dict:
    keys = ("passages", "count", "encoder", "encoder_weights", "pooling", "prefix", "max_tokens")
    return {k: (passages if k == "passages" else 0) for k in keys}


def test_cut_off_index_builds_of_other_passages_are_removed_and_nothing_else(tmp_path, caplog):
    import os

    from chipadapt.retrieval.index_partials import remove_stale_partials

    enc = tmp_path / "idx" / "minilm"
    enc.mkdir(parents=True)

    def partial(name: str, stamp: dict | None, extra: str | None = None):
        folder = enc / f".{name}.partial.tmp"
        folder.mkdir()
        if stamp is not None:
            (folder / "index.json").write_text(json.dumps(stamp))
        np.save(folder / "part-000000000.npy", np.zeros((2, 3), dtype=np.float32))
        if extra:
            (folder / extra).write_text("mine")
        for f in [*folder.iterdir(), folder]:
            os.utime(f, (1, 1))  # written long before this build
        return folder

    stale = partial("a" * 16, fingerprint("old"))
    current = partial("b" * 16, fingerprint("new"))
    foreign = partial("c" * 16, fingerprint("other"), extra="notes.txt")  # not only our files: left
    unstamped = partial("d" * 16, None)  # no fingerprint stamp: not known to be ours
    odd = enc / ".not-ours.partial.tmp"
    odd.mkdir()
    with caplog.at_level(logging.WARNING):
        removed = remove_stale_partials(enc, current, fingerprint("new"), started=1e9)
    assert removed == [stale.name] and not stale.exists()
    assert current.exists() and foreign.exists() and unstamped.exists() and odd.exists()
    assert "removed" in caplog.text and "MB" in caplog.text


def test_a_cut_off_build_held_by_another_process_is_left(tmp_path):
    import fcntl
    import os

    from chipadapt.retrieval.index_partials import remove_stale_partials

    enc = tmp_path / "minilm"
    (enc / f".{'a' * 16}.partial.tmp").mkdir(parents=True)
    (enc / f".{'a' * 16}.partial.tmp" / "index.json").write_text(json.dumps(fingerprint("old")))
    lock = enc / f".{'a' * 16}.build.lock"
    lock.write_text("")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another build of that entry (flock: per open file, so it conflicts)
    try:
        assert remove_stale_partials(enc, enc / "x", fingerprint("new"), started=1e12) == []
    finally:
        os.close(fd)
    assert remove_stale_partials(enc, enc / "x", fingerprint("new"), started=1e12) == [f".{'a' * 16}.partial.tmp"]


def test_rag_qa_records_the_cleaning_of_the_passages_it_built(tmp_path, docs):
    from helpers.models import tiny_llama

    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks.qa import QATask
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    folder = tiny_llama(tmp_path, num_layers=1, max_position_embeddings=1024)
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": "What spreads cells?", "answer": "the zephyr placer"}])
    bm25 = {"k1": 1.5, "b": 0.75, "stemmer": "english", "stopwords": "en", "context": False}
    retrieval = OmegaConf.create(
        {"passages": None, "build": build(docs), "use": "bm25", "top_k": 2, "budget_tokens": 200, "encoders": {},
         "dense": {}, "bm25": bm25, "hybrid": None}
    )  # fmt: skip
    task = QATask("rag_qa", str(qa), "question", "answer", None, 4, 2, RougeL(use_stemmer=True), False, retrieval)
    results = task.run(load_causal_lm(folder, "float32", "sdpa").eval(), load_tokenizer(folder))
    assert results["passages_cleaning"]["duplicates_dropped"] == 1


def test_evidence_with_a_secret_missing_from_its_gold_says_so_without_the_secret(tmp_path, caplog):
    write_jsonl(
        tmp_path / "q.jsonl",
        [{"id": "q1", "query": "who", "positive_ids": ["d#0"], "evidence": "mail ops@kestrel.example now"}],
    )
    passages = [Passage("d#0", "unrelated text", "d")]
    with caplog.at_level(logging.WARNING):
        assert gold_without_evidence(read_queries(tmp_path / "q.jsonl"), passages, "q.jsonl") == ["q1"]
    assert "looked for redacted too" in caplog.text and "ops@kestrel.example" not in caplog.text
