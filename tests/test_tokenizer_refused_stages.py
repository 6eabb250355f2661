"""Every stage that builds no domain tokenizer refuses `tokenizer=augmented` with the same one line, whatever
its data config holds: the attribute model's data has no `val_sources`, which the tokenizer's config read
(an interpolation error came first, before the stage's own refusal)."""

import re

import pytest
from conftest import compose
from hydra.utils import instantiate

from chipadapt.errors import ChipadaptError
from chipadapt.pipeline import train

REFUSAL = r"^tokenizer: stage={stage} does not build an augmented tokenizer: .*model\.path=RUN/model"


@pytest.mark.parametrize("tokenizer", ["augmented", "augmented_small"])
def test_the_attribute_model_refuses_an_augmented_tokenizer_as_sft_does(tmp_path, tokenizer):
    cfg = compose(["stage=attribute_model", "model=tiny", f"tokenizer={tokenizer}"], tmp_path / "run")
    with pytest.raises(ChipadaptError, match=REFUSAL.format(stage="attribute_model")):
        try:
            instantiate(cfg.tokenizer.adapt)
        except Exception as err:  # Hydra wraps what the target raises
            raise (err.__cause__ or err) from None


def test_train_stops_on_the_refusal_before_writing_anything(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Exception) as stopped:  # Hydra wraps it; train.py prints the cause
        train(compose(["stage=attribute_model", "model=tiny", "tokenizer=augmented"], run))
    cause = stopped.value.__cause__ or stopped.value
    assert isinstance(cause, ChipadaptError) and re.match(REFUSAL.format(stage="attribute_model"), str(cause))
    assert not (run / "model").exists() and not (run / "checkpoints").exists()


@pytest.mark.parametrize(
    "stage, required",
    [("retriever", []), ("reranker", ["reranker.train_file=t.jsonl"]), ("annotate", ["annotate.attribute_model=m"])],
)
def test_stages_that_never_read_the_tokenizer_group_refuse_an_augmented_one(tmp_path, stage, required):
    """These stages trained or labelled with their models' own tokenizers while the run recorded
    tokenizer=augmented, as if it had been applied."""
    from chipadapt.config_schema import validate

    cfg = compose([f"stage={stage}", "model=tiny", "tokenizer=augmented", *required], tmp_path / "run")
    with pytest.raises(ChipadaptError, match=rf"^tokenizer=augmented: stage={stage} does not use it"):
        validate(cfg)
    validate(compose([f"stage={stage}", "model=tiny", *required], tmp_path / "run"))  # the base tokenizer passes
