"""The combinations users sweep over compose as intended (every single option: test_config_targets.py)."""

import pytest
from conftest import CONF, compose
from hydra import compose as hydra_compose
from hydra import initialize_config_dir


def test_quickstart_with_the_base_tokenizer_is_the_ablation_arm(tmp_path):
    base = compose(["experiment=quickstart", "tokenizer=base"], tmp_path)
    assert base.tokenizer.adapt._target_.endswith("keep_base") and set(base.tokenizer.adapt) == {
        "_target_",
        "_partial_",
    }
    augmented = compose(["experiment=quickstart"], tmp_path)
    assert augmented.tokenizer.adapt.domain_vocab_size == 4000 and augmented.data.seq_len == 256


def test_stage_tokenizer_selects_the_augmented_tokenizer(tmp_path):
    assert compose(["stage=tokenizer"], tmp_path).tokenizer.name == "augmented"


@pytest.mark.parametrize("method", ["chipalign", "linear", "slerp", "task_arithmetic", "ties", "della"])
def test_merge_configs_compose(method):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("merge", overrides=[f"merge={method}", "models.chip=a", "models.instruct=b"])
    assert cfg.merge.name == method and cfg.merge.method._target_


def test_evaluate_config_selects_several_tasks():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("evaluate", overrides=["eval=[perplexity,mcq,ifeval]"])
    assert set(cfg.eval) == {"perplexity", "mcq", "ifeval"}
