"""A key's default lives in its YAML alone (conf/evaluate.yaml's resume: true, trainer/fsdp.yaml's
load_on_rank0: true, peft's train_new_token_rows: true): a code default beside it disagreed with the YAML
(evaluate_folder's resume=False) and took over where a caller forgot to pass the key."""

import inspect

import pytest
from omegaconf import OmegaConf

from chipadapt.eval.run import evaluate_folder
from chipadapt.models.lora import apply_lora
from chipadapt.scaleout.rank0_load import LoadOnRank0


def test_the_callers_pass_what_the_yaml_sets():
    evaluated = inspect.signature(evaluate_folder).parameters
    for name in ("items_dir", "dtype", "attn_implementation", "resume"):
        assert evaluated[name].default is inspect.Parameter.empty, name
    assert inspect.signature(LoadOnRank0.__init__).parameters["load_on_rank0"].default is inspect.Parameter.empty


def test_lora_settings_without_train_new_token_rows_are_not_completed_in_code(tmp_path):
    pytest.importorskip("peft")
    with pytest.raises(KeyError, match="train_new_token_rows"):
        apply_lora(None, OmegaConf.create({"r": 4, "lora_alpha": 8}), tmp_path)
