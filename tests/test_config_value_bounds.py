"""Values a user can set that were taken silently or failed in a traceback once the work began: each is
refused by config_schema.validate with one error naming the full key (in-process, no training)."""

import pytest
from conftest import CONF, compose
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from test_config_targets import compose_option, options

from chipadapt.config_schema import validate
from chipadapt.errors import ChipadaptError

TINY = ["model=tiny"]


def evaluate_config(overrides, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("evaluate", overrides=[*overrides, f"paths.output_dir={tmp_path}"])


TRAIN_CASES = [
    # 1. loss_guard
    ("loss_guard.max_ratio=-1", r"loss_guard.max_ratio: -1.0 must be >= 1"),
    ("loss_guard.max_ratio=0.5", r"loss_guard.max_ratio: 0.5 must be >= 1"),
    ("loss_guard.enabled=maybe", r"loss_guard.enabled: Value 'maybe' is not a valid bool"),
    ("loss_guard.window=abc", r"loss_guard.window: Value 'abc' of type 'str' could not be converted to Integer"),
    ("loss_guard.window=0", r"loss_guard.window: 0 is not a whole number >= 1"),
    ("loss_guard.warmup_steps=-2", r"loss_guard.warmup_steps: -2 is not a whole number >= 1"),
    ("loss_guard.warmup_steps=2.5", r"loss_guard.warmup_steps: Value '2.5' of type 'float' could not be converted"),
    ("+loss_guard.windw=3", r"loss_guard.windw: unknown key"),
    # the window holds at most `window` losses and the guard compares once it holds warmup_steps of them
    ("loss_guard.window=5", r"loss_guard.window: 5 is less than loss_guard.warmup_steps=10: the guard would never"),
    # 2. optimizer, scheduler, data loader, retriever
    (
        "optim=adamw_cosine optim.scheduler.num_warmup_steps=-5",
        r"optim.scheduler.num_warmup_steps: -5 is not a whole number >= 0",
    ),
    ("optim.optimizer.weight_decay=-1", r"optim.optimizer.weight_decay: -1 must be >= 0"),
    ("optim.optimizer.betas=[0.9]", r"optim.optimizer.betas: \[0.9\] is not two numbers in \[0, 1\)"),
    ("optim.optimizer.betas=[0.9,1.5]", r"optim.optimizer.betas: \[0.9, 1.5\] is not two numbers"),
    ("data.num_workers=-1", r"data.num_workers: -1 must be >= 0"),
    # 3. TF32
    ("matmul_precision=hihg", r"matmul_precision: 'hihg' is not one of highest, high, medium"),
    # 5. peft
    ("peft=lora_small peft.r=-4", r"peft.r: -4 is not a rank >= 1"),
    ("peft=lora_small peft.r=abc", r"peft.r: Value 'abc' of type 'str' could not be converted to Integer"),
    ("peft=lora_small peft.lora_dropout=1.5", r"peft.lora_dropout: 1.5 must be in \[0, 1\)"),
    ("peft=lora_small peft.lora_alpha=0", r"peft.lora_alpha: 0.0 must be > 0"),
    ("peft=lora_small +peft.lora_alpah=8", r"peft.lora_alpah: unknown key \(did you mean peft.lora_alpha\?"),
    ("peft=lora_small peft.target_modules=[]", r"peft.target_modules: \[\] is not a module name"),
    ("peft=lora_small peft.train_new_token_rows=maybe", r"peft.train_new_token_rows: Value 'maybe' is not a valid"),
    # LoRA on peft=none: a KeyError for train_new_token_rows at model setup
    (
        "peft=none peft.r=8",
        r"^peft.r=8: LoRA also needs peft.lora_alpha, .*peft.train_new_token_rows; choose peft=lora_s",
    ),
    # LoraConfig got task_type twice, a TypeError at model setup
    ("peft=lora_small +peft.task_type=CAUSAL_LM", r"^peft.task_type: set by chipadapt itself"),
    # full fine-tuning: a LoRA setting beside it did nothing
    ("peft=none +peft.use_dora=true", r"^peft.use_dora: a LoRA setting, and peft.r is null"),
    # 6. model source, checkpoint callback
    ("model.source.hidden_size=abc", r"model.source.hidden_size: Value 'abc' of type 'str' could not be converted"),
    ("model.source.num_layers=0", r"model.source.num_layers: 0 is not a whole number >= 1"),
    ("callbacks.checkpoint.save_top_k=abc", r"callbacks.checkpoint.save_top_k: 'abc' is not a whole number >= -1"),
    ("callbacks.checkpoint.save_top_k=-2", r"callbacks.checkpoint.save_top_k: -2 is not a whole number >= -1"),
    # 7. switches and the plan's throughput
    ("stage.validate_before=maybe", r"stage.validate_before: 'maybe' is not true or false"),
    ("plan.tokens_per_s_per_gpu=-3", r"plan.tokens_per_s_per_gpu: -3 must be > 0"),
]

RETRIEVER_CASES = [
    ("retriever.train.temperature=-1", r"retriever.train.temperature: -1 must be > 0"),
    ("retriever.train.temperature=0", r"retriever.train.temperature: 0 must be > 0"),
    ("retriever.encoder.pooling=maxx", r"^retriever.encoder.pooling: 'maxx' is not one of mean, cls"),
]

EVALUATE_CASES = [
    # 4. perplexity's limits (eval=[perplexity] and eval=[corpus_ppl])
    (["eval=[perplexity]", "eval.perplexity.max_chars_per_document=-1"], r"eval.perplexity.max_chars_per_document: -1"),
    (["eval=[perplexity]", "eval.perplexity.max_tokens_per_document=0"], r"eval.perplexity.max_tokens_per_document: 0"),
    (["eval=[perplexity]", "eval.perplexity.splits.domain.held_out=1.5"], r"splits.domain.held_out: 1.5 must be <= 1"),
    (["eval=[perplexity]", "eval.perplexity.splits.domain.held_out=0"], r"splits.domain.held_out: 0 must be > 0"),
    (["eval=[perplexity]", "eval.perplexity.max_tokens=-5"], r"eval.perplexity.max_tokens: -5 is not a whole number"),
    (["eval=[perplexity]", "eval.perplexity.max_length=abc"], r"eval.perplexity.max_length: 'abc' is not a whole"),
    (["eval=[perplexity]", "eval.perplexity.max_length=null"], r"eval.perplexity.max_length: null is not a whole"),
    (["eval=[perplexity]", "eval.perplexity.max_documents=0"], r"eval.perplexity.max_documents: 0 is not a whole"),
    (["eval=[corpus_ppl]", "eval.corpus_ppl.max_tokens=0"], r"eval.corpus_ppl.max_tokens: 0 is not a whole number"),
    (["eval=[corpus_ppl]", "eval.corpus_ppl.splits.ibex.held_out=-0.1"], r"splits.ibex.held_out: -0.1 must be > 0"),
    # 7. switches and sampling
    (["eval=[ifeval]", "eval.ifeval.chat=maybe"], r"eval.ifeval.chat: 'maybe' is not true or false"),
    (["eval=[ifeval]", "eval.ifeval.chat=1.5"], r"eval.ifeval.chat: 1.5 is not true or false"),
    (["eval=[verilog]", "eval.verilog.references_only=maybe"], r"eval.verilog.references_only: 'maybe' is not true"),
    (["eval=[verilog]", "eval.verilog.temperature=-1"], r"eval.verilog.temperature: -1 must be >= 0"),
    # 6. model.source on evaluate.py too
    (["eval=[perplexity]", "model=tiny", "model.source.hidden_size=abc"], r"model.source.hidden_size: Value 'abc'"),
]


@pytest.mark.parametrize(("overrides", "message"), TRAIN_CASES)
def test_a_bad_training_setting_is_refused_naming_its_key(tmp_path, overrides, message):
    with pytest.raises(ChipadaptError, match=message):
        validate(compose([*TINY, *overrides.split()], tmp_path))


@pytest.mark.parametrize(("override", "message"), RETRIEVER_CASES)
def test_a_bad_retriever_setting_is_refused_naming_its_key(tmp_path, override, message):
    with pytest.raises(ChipadaptError, match=message):
        validate(compose(["stage=retriever", override], tmp_path))


@pytest.mark.parametrize(("overrides", "message"), EVALUATE_CASES)
def test_a_bad_evaluation_setting_is_refused_naming_its_key(tmp_path, overrides, message):
    with pytest.raises(ChipadaptError, match=message):
        validate(evaluate_config(overrides, tmp_path))


def test_settings_as_strings_are_written_back_as_the_schema_types_them(tmp_path):
    """`loss_guard.enabled=off` is false to OmegaConf, and was a true string to the guard that reads it."""
    cfg = compose([*TINY, "loss_guard.enabled=off", "peft=lora_small", "peft.r=8.0", "+peft.use_rslora=true"], tmp_path)
    validate(cfg)
    assert cfg.loss_guard.enabled is False and cfg.stage.module.loss_guard.enabled is False
    assert cfg.peft.r == 8 and type(cfg.peft.r) is int and cfg.peft.use_rslora is True  # a LoraConfig key: kept


# eval: below; merge: its output folder resolves only in a Hydra run (HydraConfig), as before these checks.
@pytest.mark.parametrize("override", [o for o in options() if not o.startswith(("eval=", "merge="))])
def test_every_shipped_option_validates(tmp_path, override):
    cfg = compose_option(override, tmp_path)
    if OmegaConf.is_missing(cfg.get("model", {}), "path"):  # model=llama2_*: a folder the user names
        cfg.model.path = str(tmp_path)
    validate(cfg)


@pytest.mark.parametrize("task", sorted(p.stem for p in (CONF / "eval").glob("*.yaml")))
def test_every_shipped_eval_task_validates(tmp_path, task):
    validate(evaluate_config([f"eval=[{task}]"], tmp_path))


def test_whole_floats_and_switch_words_read_alike_in_every_group(tmp_path):
    """`num_warmup_steps=1e2` was refused while trainer.max_steps=1e2 was made 100; `eval.ifeval.chat=no`
    refused while loss_guard.enabled=no was made false: one rule each (config_typing)."""
    cfg = compose([*TINY, "optim=adamw_cosine", "optim.scheduler.num_warmup_steps=1e2", "resume=no"], tmp_path)
    validate(cfg)
    assert cfg.optim.scheduler.num_warmup_steps == 100 and type(cfg.optim.scheduler.num_warmup_steps) is int
    assert cfg.resume is False
    cfg = compose(
        [*TINY, "optim=adamw_cosine", "optim.scheduler.num_warmup_steps=10.0", "stage.validate_before=off"], tmp_path
    )
    validate(cfg)
    assert type(cfg.optim.scheduler.num_warmup_steps) is int and cfg.stage.validate_before is False
    cfg = evaluate_config(["eval=[ifeval]", "eval.ifeval.chat=no"], tmp_path)
    validate(cfg)
    assert cfg.eval.ifeval.chat is False
