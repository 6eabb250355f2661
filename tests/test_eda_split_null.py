"""`eval.eda_script.eval_fraction=null` (documented: no evaluation split, every script of the file) is the one
key to set: SFT's eda_scripts source then leaves nothing out and its eda_heldout validation reads every row,
annotate's EDA-Corpus input is annotated whole. Before, the sources got `{fraction: null}` and SFT stopped
with `exclude_eval_split: expected {fraction: a number between 0 and 1}` unless that was set to null too."""

from conftest import compose, write_jsonl
from omegaconf import OmegaConf

from chipadapt.data.conversations import read_conversations
from chipadapt.data.eda_split import is_eval_row
from chipadapt.stages.annotate import input_spec

SCRIPTS = [f"design.set_clock(period={i})\nrun_step_{i}()" for i in range(40)]


def eda_file(tmp_path):
    rows = [{"prompt": f"write step {i}", "script": script} for i, script in enumerate(SCRIPTS)]
    return write_jsonl(tmp_path / "eda.jsonl", rows)


def source(cfg, section: str, name: str, path) -> dict:
    spec = OmegaConf.to_container(cfg.data[section][name], resolve=True)
    return {**spec, "path": str(path)}


def test_sft_with_a_null_fraction_leaves_nothing_out_and_validates_on_every_row(tmp_path):
    path = eda_file(tmp_path)
    split = compose(["stage=sft", "eval.eda_script.eval_fraction=0.5"], tmp_path / "a")
    left_in = read_conversations("eda_scripts", source(split, "sources", "eda_scripts", path))
    assert len(left_in) == sum(not is_eval_row(s, 0.5) for s in SCRIPTS) < len(SCRIPTS)  # the split applies

    whole = compose(["stage=sft", "eval.eda_script.eval_fraction=null"], tmp_path / "b")
    assert len(read_conversations("eda_scripts", source(whole, "sources", "eda_scripts", path))) == len(SCRIPTS)
    validated = read_conversations("eda_heldout", source(whole, "val_sources", "eda_heldout", path), "data.val_sources")
    assert len(validated) == len(SCRIPTS)


def test_annotate_with_a_null_fraction_annotates_an_eda_corpus_file_whole(tmp_path):
    corpus = tmp_path / "eda_scripts"
    corpus.mkdir()
    path = eda_file(corpus)
    common = [
        "stage=annotate",
        "annotate.attribute_model=a",
        f"paths.shared_data={tmp_path}",
        f"annotate.input.path={path}",
    ]
    split = compose([*common, "eval.eda_script.eval_fraction=0.5"], tmp_path / "a").annotate
    assert input_spec(split)[0]["exclude_eval_split"] == {"fraction": 0.5}
    for extra in (["eval.eda_script.eval_fraction=null"], ["+annotate.input.exclude_eval_split={fraction:null}"]):
        whole = compose([*common, *extra], tmp_path / "b").annotate
        spec, switch_off = input_spec(whole)
        assert switch_off is None and not spec.get("exclude_eval_split")
        assert len(read_conversations("annotate.input", spec)) == len(SCRIPTS)
