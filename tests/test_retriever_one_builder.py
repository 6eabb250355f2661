"""stages/retriever.py under a distributed launcher: the processes that start together (torchrun, srun)
build the run folder's passages and synthetic data once, and all read that one file, whose record
matches it; the held-out queries are written by the launching process alone.

Two threads stand for two processes: flock locks taken through two open files exclude each other
within one process too. Each build is slow and gives other text each time (an LLM sampling
questions), so two builds would be seen."""

import random
import threading
import time
from dataclasses import replace
from uuid import uuid4

from helpers.launch_env import launched_with
from omegaconf import OmegaConf

import chipadapt.retrieval.synthetic as synthetic
import chipadapt.stages.retriever as stage
from chipadapt.io.built_from import why_rebuild
from chipadapt.retrieval.built_inputs import passages_inputs, synthesis_inputs
from chipadapt.retrieval.passages import read_passages
from chipadapt.retrieval.queries import Query
from chipadapt.retrieval.tevatron_data import read_tevatron
from chipadapt.retrieval.training_data import plain

SENTENCES = " ".join(
    f"The placer moves cell group {i} toward its pins when the density target allows it." for i in range(6)
)


def config(docs) -> OmegaConf:
    return OmegaConf.create(
        {
            "seed": 3,
            "overwrite": False,  # the stage reads it (an earlier release's files)
            "model": {"path": None},
            "passages": {
                "sources": {"docs": {"path": str(docs)}},
                "max_chars": 512,
                "min_chars": 64,
                "overlap_chars": 0,
                "context": False,
                # conf/passages/folder.yaml's cleaning (retrieval/passage_cleaning.py)
                "redact": True,
                "drop_duplicates": True,
                "keep_machine_like": False,
                "undecodable_share": 0.05,
            },
            "retriever": {
                "passages": None,
                "synthetic": {
                    "method": "ict",
                    "num_samples": 4,
                    "styles": None,
                    "min_passage_chars": 100,
                    "batch_size": 2,
                    "max_new_tokens": 8,
                    "passage_chars": 200,
                    "mine_depth": 3,
                    "judge_depth": 0,
                    "judge_margin": 0.0,
                    "num_negatives": 1,
                    "near_duplicate_jaccard": 0.5,
                },
                "bm25": {"k1": 1.5, "b": 0.75, "stemmer": "english", "stopwords": "en", "context": False},
            },
        }
    )


def docs_folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("place", "route", "cts"):
        (docs / f"{name}.md").write_text(f"# {name}\n\n{SENTENCES}\n")
    return docs


def together(call, processes: int = 2) -> list:
    """`call()` in `processes` threads started at once; their results."""
    start, results = threading.Barrier(processes), [None] * processes

    def one(i):
        start.wait()
        results[i] = call()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_processes_that_start_together_build_the_passages_once_and_read_one_file(tmp_path, monkeypatch):
    cfg, out = config(docs_folder(tmp_path)), tmp_path / "run"
    real, builds = stage.load_passages_report, []

    def nondeterministic(path, build, key):
        builds.append(1)
        time.sleep(0.3)  # long enough for the other process to arrive while this one builds
        passages, report = real(path, build, key)
        return [replace(p, text=f"{p.text} {uuid4().hex}") for p in passages], report

    monkeypatch.setattr(stage, "load_passages_report", nondeterministic)
    (first, first_cleaning), (second, second_cleaning) = together(lambda: stage.stage_passages(cfg, out, None))
    assert len(builds) == 1
    target = out / "passages.jsonl"
    assert first == second == read_passages(target) and len(first) == 3
    assert first_cleaning == second_cleaning is not None  # the reuse reads the builder's report from its record
    assert why_rebuild(target, passages_inputs(plain(cfg.passages)), "") is None  # its own record


def test_processes_that_start_together_synthesize_once_and_train_on_one_file(tmp_path, monkeypatch):
    cfg, out = config(docs_folder(tmp_path)), tmp_path / "run"
    passages, _ = stage.stage_passages(cfg, out, None)
    real, builds = synthetic.synthesize, []

    def nondeterministic(*args, **kwargs):
        builds.append(1)
        groups, report = real(*args, **kwargs)
        time.sleep(0.3)
        random.SystemRandom().shuffle(groups)  # another order (another sample) each time
        return groups, {**report, "build": uuid4().hex}

    monkeypatch.setattr(synthetic, "synthesize", nondeterministic)
    first, second = together(lambda: stage.stage_training_file(cfg, out, passages, None))
    assert len(builds) == 1 and first == second == out / "synthetic" / "train.jsonl"
    assert read_tevatron(first)
    rcfg = cfg.retriever
    built_from = synthesis_inputs(plain(rcfg.synthetic), plain(rcfg.bm25), cfg.model, passages, cfg.seed)
    assert why_rebuild(first, built_from, "") is None


def test_the_held_out_queries_are_written_by_the_launching_process_alone(tmp_path, monkeypatch):
    launched_with(monkeypatch)
    queries, held = [Query("q1", "how is density set?", ("docs:place.md#0",))], tmp_path / "heldout.jsonl"
    monkeypatch.setenv("LOCAL_RANK", "1")
    stage.write_heldout_queries(queries, held)
    assert not held.exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    stage.write_heldout_queries(queries, held)
    assert held.is_file()
