"""The values of the config groups with a schema (`optim`, `merge`, `model`, a training blend's `data`,
`data.curate`), once typed (config_typing.typed_group): ranges, regular expressions, choices."""

import re

from chipadapt.config_typing import bounded_number, required_value
from chipadapt.errors import ChipadaptError

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "auto")


def check_optim(optim: dict) -> None:
    bounded_number("optim.lr", required_value("optim", optim, "lr"), 0, low_open=True)
    if optim.get("gradient_clip_val") is not None:
        bounded_number("optim.gradient_clip_val", optim["gradient_clip_val"], 0)
    optimizer = optim.get("optimizer") if isinstance(optim.get("optimizer"), dict) else {}
    if "weight_decay" in optimizer:
        bounded_number("optim.optimizer.weight_decay", optimizer["weight_decay"], 0)
    if "betas" in optimizer:  # Adam's two decay rates; one alone failed in the optimizer, once training began
        betas = optimizer["betas"]
        if (
            not isinstance(betas, list)
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
        ):
            raise ChipadaptError(f"optim.optimizer.betas: {betas!r} is not two numbers in [0, 1), e.g. [0.9, 0.95]")
    scheduler = optim.get("scheduler") if isinstance(optim.get("scheduler"), dict) else {}
    warmup = scheduler.get("num_warmup_steps")
    if warmup is not None and (isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0):
        raise ChipadaptError(f"optim.scheduler.num_warmup_steps: {warmup!r} is not a whole number >= 0")


def check_merge(merge: dict) -> None:
    extrapolate = bool(required_value("merge", merge, "allow_extrapolation"))
    schedule = merge.get("schedule") or []
    lams = [("merge.lam", required_value("merge", merge, "lam"))]
    lams += [
        (f"merge.schedule[{i}].lam", rule.get("lam") if isinstance(rule, dict) else None)
        for i, rule in enumerate(schedule)
    ]
    for key, lam in lams:
        if not isinstance(lam, (int, float)) or isinstance(lam, bool):
            raise ChipadaptError(f"{key}: {lam!r} is not a number")
        if not extrapolate and not 0 <= lam <= 1:
            raise ChipadaptError(f"{key}: {lam} is outside [0, 1]; merge.allow_extrapolation=true allows it")
    for i, rule in enumerate(schedule):
        if not isinstance(rule, dict) or "pattern" not in rule:
            raise ChipadaptError(f"merge.schedule[{i}]: expected {{pattern: REGEX, lam: NUMBER}}")
        try:
            re.compile(str(rule["pattern"]))
        except re.error as err:
            raise ChipadaptError(
                f"merge.schedule[{i}].pattern: {rule['pattern']!r} is not a regular expression ({err})"
            ) from None
    method = merge.get("method") if isinstance(merge.get("method"), dict) else {}
    bounds = {
        "density": (0, 1, True),
        "epsilon": (0, 1, False),
        "dot_threshold": (0, 1, True),
        "scale": (None, None, False),
    }
    for name, (low, high, open_low) in bounds.items():
        if name in method:
            bounded_number(f"merge.method.{name}", method[name], low, high, open_low)


def check_model(model: dict) -> None:
    if "dtype" in model and model["dtype"] not in DTYPES:
        raise ChipadaptError(f"model.dtype: {model['dtype']!r} is not one of {', '.join(DTYPES)}")
    if "attn_implementation" in model and model["attn_implementation"] not in ATTENTION:
        raise ChipadaptError(
            f"model.attn_implementation: {model['attn_implementation']!r} is not one of {', '.join(ATTENTION)}"
        )


def check_blend(data: dict) -> None:
    for key in ("seq_len", "micro_batch_size", "global_batch_size"):
        if key in data:
            bounded_number(f"data.{key}", data[key], 0, low_open=True)
    if data.get("seq_len") == 1:  # refused here, before the sources are tokenized
        raise ChipadaptError("data.seq_len: 1 must be >= 2: a row predicts each token from the one before it")
    if "val_fraction" in data:
        bounded_number("data.val_fraction", data["val_fraction"], 0, 1)
    if "val_max_bytes" in data:
        bounded_number("data.val_max_bytes", data["val_max_bytes"], 0, low_open=True)
    if "num_workers" in data:
        bounded_number("data.num_workers", data["num_workers"], 0)  # the DataLoader's worker processes; 0: none
    for split in ("sources", "val_sources"):
        for name, spec in (data.get(split) or {}).items():
            if spec is None:
                continue
            if not isinstance(spec, dict) or "path" not in spec:
                raise ChipadaptError(f"data.{split}.{name}: expected a source with a `path`")
            for key in ("weight", "epochs"):
                if key in spec:
                    bounded_number(f"data.{split}.{name}.{key}", spec[key], 0)
            if "max_bytes" in spec:
                bounded_number(f"data.{split}.{name}.max_bytes", spec["max_bytes"], 0, low_open=True)


# data.curate's numbers: (lowest, highest, lowest excluded); a whole number where the schema says int.
CURATE_BOUNDS = {
    "workers": (1, None, False),
    "docs_per_shard": (1, None, False),
    "limits.max_bytes": (0, None, True),
    "limits.min_chars": (0, None, False),
    "limits.max_lines": (1, None, False),
    "generated.banner_lines": (0, None, False),
    "generated.max_mean_line_length": (0, None, True),
    "generated.max_line_length": (0, None, True),
    "generated.max_compression_ratio": (0, None, True),
    "generated.netlist_instance_share": (0, 1, False),
    # A shingle of 0 words makes every document the same empty set: all but one would go as near-duplicates.
    "dedup.shingle": (1, None, False),
    "dedup.num_perm": (2, None, False),
    "dedup.threshold": (0, 1, True),
}


def check_curate(curate: dict) -> None:
    for dotted, (low, high, low_open) in CURATE_BOUNDS.items():
        section, _, key = dotted.rpartition(".")
        values = curate.get(section) if section else curate
        value = values.get(key, "???") if isinstance(values, dict) else "???"
        if value != "???":
            bounded_number(f"data.curate.{dotted}", value, low, high, low_open)


# tokenizer.adapt's numbers (lowest, lowest excluded). A domain tokenizer needs the 256 bytes and
# the special tokens; a new token joins at least 2 base pieces, so max_pieces < 2 adds nothing.
TOKENIZER_ADAPT_BOUNDS = {
    "domain_vocab_size": (300, False),
    "max_new_tokens": (1, False),
    "max_general_per_million": (0, False),
    "min_savings": (0, False),
    "max_pieces": (2, False),
}


def check_tokenizer_adapt(adapt: dict) -> None:
    """`tokenizer=augmented`'s settings, before any work: each bad key named on its own."""
    from chipadapt.tokenizer.init_rows import INPUT_RULES, OUTPUT_RULES, rule

    for key, (low, low_open) in TOKENIZER_ADAPT_BOUNDS.items():
        value = adapt[key]
        bounded_number(f"tokenizer.adapt.{key}", value, low, low_open=low_open)
        if key != "max_general_per_million" and not float(value).is_integer():
            raise ChipadaptError(f"tokenizer.adapt.{key}: {value!r} is not a whole number")
    rule(INPUT_RULES, adapt["init"]["input"], "input")
    rule(OUTPUT_RULES, adapt["init"]["output"], "output")
