"""The EDA evaluation split is one setting, `eval.eda_script.eval_fraction`, composed once for train.py:
every stage composes with every data blend, and each place that leaves the split out (SFT's eda_scripts
source, its eda_heldout validation, annotate's EDA-Corpus input) reads that one key. Before, stage=annotate
and data=sft_blend each composed eval/eda_script, and `stage=annotate data=sft_blend` did not compose at all.
Composing only: nothing runs."""

import pytest
from conftest import CONF, compose
from omegaconf import OmegaConf

# Values a stage needs before it composes (conf/stage/*.yaml `???`).
REQUIRED = {
    "annotate": ["annotate.attribute_model=a"],
    "bootstrap": ["bootstrap.attribute_model=a"],
    "reranker": ["reranker.train_file=t.jsonl"],
}
# Where the split is read, by the config key that holds its fraction; absent where a blend has no such source.
CONSUMERS = (
    "data.sources.eda_scripts.exclude_eval_split.fraction",
    "data.val_sources.eda_heldout.only_eval_split.fraction",
    "annotate.eda_eval_split.fraction",
)
STAGES = sorted(p.stem for p in (CONF / "stage").glob("*.yaml"))
BLENDS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


def consumers(cfg) -> dict[str, object]:
    """Each consumer key the config has, with its resolved value."""
    found = {}
    for key in CONSUMERS:
        parent, leaf = key.rsplit(".", 1)
        node = OmegaConf.select(cfg, parent)
        if node is not None and leaf in node:
            found[key] = OmegaConf.select(cfg, key)
    return found


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_composes_with_every_blend_and_one_fraction(stage, blend, tmp_path):
    overrides = [f"stage={stage}", f"data={blend}", *REQUIRED.get(stage, [])]
    cfg = compose([*overrides, "eval.eda_script.eval_fraction=0.35"], tmp_path)
    assert cfg.eval.eda_script.eval_fraction == 0.35
    assert set(consumers(cfg).values()) <= {0.35}, consumers(cfg)


@pytest.mark.parametrize(
    "overrides",
    [["stage=sft"], ["stage=steerlm"], ["stage=annotate", "data=sft_blend"], ["stage=annotate", "data=steerlm_blend"]],
)
def test_the_split_is_read_where_the_readme_says(overrides, tmp_path):
    stage = overrides[0].split("=")[1]
    cfg = compose([*overrides, *REQUIRED.get(stage, [])], tmp_path)
    found = consumers(cfg)
    expected = {"annotate.eda_eval_split.fraction"} if stage == "annotate" else set()
    if cfg.data.name == "sft_blend":
        expected |= set(CONSUMERS[:2])
    elif cfg.data.name == "steerlm_blend":
        expected |= {CONSUMERS[1]}  # its eda_scripts source is null: unlabelled until annotated
    assert set(found) == expected
    assert set(found.values()) == {0.2}  # conf/eval/eda_script.yaml's


def test_the_fraction_is_defined_in_one_file():
    defining = sorted(
        str(path.relative_to(CONF))
        for path in CONF.rglob("*.yaml")
        if any(line.lstrip().startswith("eval_fraction:") for line in path.read_text().splitlines())
    )
    assert defining == ["eval/eda_script.yaml"]
