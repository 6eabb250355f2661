"""A command-line override of what the stage never reads is refused in one line before any work
(run_settings.NOT_READ, stage_reads.py): `stage=retriever peft=lora_small` trained without LoRA while the run
recorded peft=lora_small, and `train.py stage=sft eval.eda_script.path=/does/not/exist.jsonl` exited 0.
The stage's own defaults, the keys it reads and an experiment preset's values pass; the rerun comparison
leaves out the same keys."""

import pytest
from conftest import CONF
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from chipadapt.config_schema import validate
from chipadapt.errors import ChipadaptError
from chipadapt.run_settings import run_settings

REQUIRED = {
    "annotate": ["annotate.attribute_model=a"],
    "bootstrap": ["bootstrap.attribute_model=a"],
    "reranker": ["reranker.train_file=t.jsonl"],
}


@pytest.fixture
def as_run(tmp_path):
    """The config train.py validates: Hydra's job settings (the user's overrides) set as while it runs."""

    def compose(stage: str, *overrides: str):
        args = [f"stage={stage}", *REQUIRED.get(stage, []), *overrides, f"paths.output_dir={tmp_path}"]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = hydra_compose("train", overrides=args, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    yield compose
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize(
    "stage, override, what",
    [
        ("attribute_model", "peft=lora_small", "peft (LoRA)"),
        ("attribute_model", "model.dtype=bfloat16", "model.dtype"),
        ("attribute_model", "model.gradient_checkpointing=true", "model.gradient_checkpointing"),
        ("attribute_model", "loss_guard.max_ratio=1.0001", "loss_guard"),
        ("retriever", "peft=lora_small", "peft (LoRA)"),
        ("retriever", "loss_guard.enabled=false", "loss_guard"),
        ("reranker", "peft=lora_large", "peft (LoRA)"),
        ("reranker", "loss_guard.window=5", "loss_guard"),
        ("reranker", "model=llama2_7b", "model"),  # was "model.path: required", for a group it never reads
        ("tokenizer", "trainer.max_steps=3", "trainer.max_steps"),
        ("tokenizer", "optim=adamw_cosine", "optim"),
        ("tokenizer", "peft=lora_small", "peft (LoRA)"),
        ("tokenizer", "plan.gpu=a100", "plan.gpu"),
        ("tokenizer", "logger=tensorboard", "logger"),
        ("annotate", "callbacks.progress=null", "callbacks.progress"),
        ("annotate", "optim.lr=1e-3", "optim.lr"),
        ("annotate", "data.seq_len=64", "data.seq_len"),
        ("bootstrap", "data.val_fraction=0.5", "data.val_fraction"),
        ("bootstrap", "loss_guard.enabled=false", "loss_guard"),
        ("sft", "eval.eda_script.path=/does/not/exist.jsonl", "eval"),
        ("sft", "eval.eda_script.categories=[nosuch]", "eval"),
        # annotate rates with annotate.attribute_model: the causal LM's group was taken as applied
        ("annotate", "model=tiny", "model (it rates with the attribute model"),
        ("annotate", "model.dtype=bfloat16", "model (it rates with the attribute model"),
        ("attribute_model", "model.attn_implementation=eager", "model.attn_implementation"),
        # what the refusal says is the stage's: the reranker's was "(the attribute model trains in float32)"
        ("reranker", "model.dtype=float32", "model (the causal LM)"),
    ],
)
def test_an_override_the_stage_never_reads_is_refused_in_one_line(as_run, stage, override, what):
    with pytest.raises(ChipadaptError) as refused:
        validate(as_run(stage, "model=tiny" if stage not in ("reranker", "annotate") else "seed=1", override))
    assert str(refused.value).startswith(f"{override}: stage={stage} does not use {what}")
    assert str(refused.value).endswith("; remove it") and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "stage, overrides",
    [
        ("retriever", ["peft=none", "optim=adamw_cosine", "optim.lr=1e-4", "trainer.max_steps=2"]),  # its defaults
        ("reranker", ["model=smollm2_135m", "callbacks.progress=null"]),
        ("attribute_model", ["model=tiny", "peft=none", "data=attributes_oasst", "optim.lr=1e-4", "model.path=m"]),
        ("annotate", ["data.template.attribute_prefix=x", "data=steerlm_blend"]),
        (
            "bootstrap",
            ["model=tiny", "data.attributes.order=[helpfulness,quality,toxicity,humor,creativity]", "trainer=cpu"],
        ),
        ("tokenizer", ["model=tiny", "tokenizer=augmented_small", "data=sample_corpus"]),
        ("sft", ["model=tiny", "eval.eda_script.eval_fraction=0.3", "peft=lora_small", "loss_guard.max_ratio=3"]),
        ("dapt", ["experiment=quickstart"]),
    ],
)
def test_what_the_stage_reads_and_its_own_defaults_pass(as_run, stage, overrides):
    validate(as_run(stage, *overrides))


def test_the_rerun_comparison_leaves_out_what_the_check_refuses(as_run):
    """The settings a rerun compares (run_settings) and the refusal read one table: a change there is
    no change of the run."""
    config = OmegaConf.to_container(as_run("annotate", "model=tiny"), resolve=True)
    keys = set(run_settings(config, "annotate", None))
    assert any(key.startswith("data.template.") for key in keys)
    assert not any(key.startswith(("data.sources", "data.seq_len", "trainer.", "optim.", "peft.")) for key in keys)
    config = OmegaConf.to_container(as_run("retriever"), resolve=True)
    assert not any(key.startswith(("peft.", "loss_guard.", "data.")) for key in run_settings(config, "retriever", None))
    config = OmegaConf.to_container(as_run("bootstrap", "model=tiny"), resolve=True)
    keys = set(run_settings(config, "bootstrap", None))
    assert "data.attributes.order" in keys and not any(key.startswith("data.sources") for key in keys)


@pytest.mark.parametrize(
    "stage, overrides",
    [
        # each was asked for model.path, and then refused `model.path=...` as a group the stage never reads
        ("reranker", ["experiment=chipnemo_7b"]),
        ("annotate", ["experiment=chipnemo_7b"]),
        ("retriever", ["retriever.synthetic.method=ict", "model=llama2_7b"]),
        ("retriever", ["retriever.train_file=t.jsonl", "model=llama2_7b"]),
    ],
)
def test_a_required_key_the_stage_never_reads_is_not_demanded(as_run, stage, overrides):
    validate(as_run(stage, *overrides))


def test_the_retriever_writing_questions_with_the_llm_still_needs_its_path(as_run):
    with pytest.raises(ChipadaptError, match=r"^model.path: required, not set"):
        validate(as_run("retriever", "model=llama2_7b"))
