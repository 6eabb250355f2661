"""mergekit YAML out: every merge writes `mergekit_config.yml` beside its manifest, the merge it ran
as a mergekit recipe (names mapped as merge/mergekit_recipe.py describes), so either tool can redo
the other's merge (`merge.py config=mergekit_config.yml` reads it back: merge/mergekit_config.py)."""

from pathlib import Path

import yaml

from chipadapt.errors import ChipadaptError
from chipadapt.merge.chat_files import AUTO, check_chat_template
from chipadapt.merge.mergekit_recipe import INTERPOLATIONS, NORMALIZE_DEFAULT, WEIGHTED


def _per_tensor(rows: list[dict], value_of) -> float | list[dict]:
    """A scalar when every tensor has the same value, else one filter per tensor (whole names,
    longest first, so a name that contains another is matched by its own rule)."""
    values = {row["tensor"]: value_of(row["lam"]) for row in rows}
    if len(set(values.values())) <= 1:
        return next(iter(values.values()), None)
    return [{"filter": name, "value": values[name]} for name in sorted(values, key=lambda n: (-len(n), n))]


def mergekit_recipe(
    cfg,
    rows: list[dict],
    out_dtype: str | None,
    tokenizer_source: str | None = None,
    carried_template=None,
    auto_tied: bool = False,
) -> dict:
    """The mergekit config of the merge `cfg` ran; `rows` are its per-tensor diagnostics (tensor, lam).
    `out_dtype`: the dtype every float tensor was written in; None where no out_dtype says what a null
    merge.out_dtype wrote (the chip model's several dtypes, one per tensor, or a config.json that names
    another dtype than its tensors': merge/dtypes.py written_dtype), which mergekit cannot be told: `dtype`
    and `out_dtype` are then null, since either one set makes mergekit (and merge.py config=) write every
    tensor in it. Left null, mergekit writes each tensor in its base_model's stored dtype (linear: the wider
    of the inputs'), the same files only where that model stores each tensor as models.chip does.
    `tokenizer_source`: "union" where the inputs' vocabularies differ in length (the longest one, ids
    unchanged, is their union; a token of one model only keeps that model's row, as chipadapt's).
    `carried_template`: the chat template the output carries; `auto_tied`: merge.chat_template=auto found
    two templates equally common (merge/chat_files.py auto_is_a_tie)."""
    name, method = cfg.merge.name, cfg.merge.method
    chip, instruct, base = str(cfg.models.chip), str(cfg.models.instruct), cfg.models.base
    recipe: dict = {"merge_method": name}
    if name in INTERPOLATIONS:
        recipe["base_model"] = instruct
        recipe["models"] = [{"model": chip}, {"model": instruct}]
        recipe["parameters"] = {"t": _per_tensor(rows, float)}
    elif name in WEIGHTED:
        # 1 - 0.7 is 0.30000000000000004 in floats: written as the 0.3 a person would (15 digits still
        # tell any two float64 weights a merge could be given apart).
        per_model = [
            {"weight": _per_tensor(rows, float)},
            {"weight": _per_tensor(rows, lambda lam: float(f"{1.0 - lam:.15g}"))},
        ]
        if name in ("ties", "della"):
            for params in per_model:
                params["density"] = float(method.density)
                if name == "della":
                    params["epsilon"] = float(method.epsilon)
        recipe["models"] = [
            {"model": chip, "parameters": per_model[0]},
            {"model": instruct, "parameters": per_model[1]},
        ]
        if base:
            recipe["base_model"] = str(base)
        if name != "linear":
            recipe["parameters"] = {"lambda": float(method.scale), "normalize": NORMALIZE_DEFAULT[name]}
        else:
            recipe["parameters"] = {"normalize": True}
    else:
        raise ChipadaptError(f"merge={name}: no mergekit equivalent is known")
    # `dtype` is mergekit's merge math (chipadapt's is float32), `out_dtype` what gets written.
    recipe["dtype"] = "float32" if out_dtype else None
    recipe["out_dtype"] = out_dtype
    if tokenizer_source:
        recipe["tokenizer_source"] = tokenizer_source
    if template := _chat_template(cfg.merge.chat_template, carried_template, auto_tied):
        recipe["chat_template"] = template
    return recipe


def _chat_template(setting, carried, auto_tied: bool = False) -> str | None:
    """mergekit's `chat_template`: merge.chat_template as given (auto or a template), except an auto
    that was a tie: mergekit takes one of tied templates in hash order, so the text of the one the output
    carries is written instead. Without the setting, the template the output carries (chosen by
    merge.chat_template_from), which mergekit would otherwise take from its donor model, not always the
    same input. None where mergekit cannot be given it: a set of named templates, or one it would read
    as a template's name."""
    if setting == AUTO and auto_tied:
        return _writable(carried) or AUTO  # a set of named templates: auto is the nearest mergekit has
    if setting is not None:
        return str(setting)
    return _writable(carried)


def _writable(carried) -> str | None:
    """`carried` where a mergekit recipe can hold it as a Jinja template, else None."""
    if not isinstance(carried, str):
        return None
    try:
        check_chat_template(carried, "carried")
    except ChipadaptError:
        return None
    return carried


HEADER = """\
# The merge chipadapt ran, as a mergekit config (merge.py config=THIS_FILE runs it again here).
# {note}
"""
# The line said where out_dtype is null (mergekit_recipe): why no out_dtype writes what merge.out_dtype=null
# wrote, and what mergekit writes instead. With dtype and out_dtype null it loads each tensor as stored and
# casts nothing on write, so a tensor comes out in the dtype its merge method returns: slerp's is its
# base_model's tensor's, as are task_arithmetic's, ties' and della's; linear's the promotion of its inputs'.
NULL_OUT_DTYPE = "# out_dtype: null: merge.out_dtype=null kept models.chip's dtypes ({reason}). {mergekit}\n"
MERGEKIT_WRITES = (
    "Left null, mergekit writes each tensor in {whose} stored dtype for it, which matches this folder only where {when}"
)
_INSTRUCT = ("its base_model's (models.instruct's)", "models.instruct stores each tensor as models.chip does")
_BASE = ("its base_model's (models.base's)", "models.base stores each tensor as models.chip does")
WHOSE = {
    "slerp": _INSTRUCT,
    "chipalign": _INSTRUCT,
    "linear": (
        "the wider of models.chip's and models.instruct's",
        "models.instruct stores no tensor in a wider dtype than models.chip",
    ),
    "task_arithmetic": _BASE,
    "ties": _BASE,
    "della": _BASE,
}
NOTES = {
    "chipalign": "chipalign is ChipAlign's geodesic merge (arXiv 2412.19819), a custom method: mergekit has no "
    "built-in of that name. t is the chip model's weight; base_model is the instruct model.",
    "slerp": "t is the chip model's weight; base_model is the instruct model (t=0).",
    "della": "chipadapt's DELLA draws its drop mask from merge.method.seed; mergekit draws its own, so "
    "tensors agree in distribution, not bit for bit.",
}


def write_mergekit_config(
    dest: Path,
    cfg,
    rows: list[dict],
    out_dtype: str | None,
    tokenizer_source: str | None = None,
    carried_template=None,
    auto_tied: bool = False,
    dtype_reason: str | None = None,
) -> None:
    """`dtype_reason` (merge/dtypes.py no_out_dtype_reason) is said in the header where `out_dtype` is None."""
    recipe = mergekit_recipe(cfg, rows, out_dtype, tokenizer_source, carried_template, auto_tied)
    note = NOTES.get(cfg.merge.name, "The first model is the chip model, the second the instruct model.")
    text = HEADER.format(note=note)
    if out_dtype is None:
        whose, when = WHOSE[cfg.merge.name]
        mergekit = MERGEKIT_WRITES.format(whose=whose, when=when)
        text += NULL_OUT_DTYPE.format(reason=dtype_reason, mergekit=mergekit)
    text += yaml.safe_dump(
        recipe,
        sort_keys=False,
        default_flow_style=None,
    )
    Path(dest).write_text(text)
