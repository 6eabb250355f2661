"""The ChipNeMo recipes compute as their trainer preset does: `experiment=chipnemo_* trainer=cpu` computes
in float32 as README says trainer=cpu does. Before, the recipe's own `trainer.precision: bf16-mixed`
merged after the trainer group and outranked trainer=cpu ("Using bfloat16 AMP" on a CPU)."""

import pytest
from conftest import compose

RECIPES = ["chipnemo_7b", "chipnemo_13b", "chipnemo_70b"]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize(("trainer", "precision"), [("cpu", "32-true"), ("fsdp", "bf16-mixed"), (None, "bf16-mixed")])
def test_the_trainer_preset_decides_the_recipes_precision(tmp_path, recipe, trainer, precision):
    overrides = [f"experiment={recipe}", "model.path=/models/m", *([f"trainer={trainer}"] if trainer else [])]
    cfg = compose(overrides, tmp_path)
    assert cfg.trainer.precision == precision


def test_an_explicit_precision_still_wins(tmp_path):
    cfg = compose(["experiment=chipnemo_7b", "model.path=/m", "trainer=cpu", "trainer.precision=bf16-mixed"], tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"
