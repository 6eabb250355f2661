"""Tensors that are not floating point (a bool causal mask such as GPT-2's `attn.bias`, integer
position ids) are never interpolated: the float merge of two masks cast back to bool is a third mask
that neither model was trained with (a causal mask merged with an all-True one comes back all True:
no longer causal), with no error anywhere.

Equal in every input, such a tensor is copied. Different, the merge is refused before anything is
written, unless `merge.non_float_from` (conf/merge.yaml) names the input to take it from; mergekit's users
would name `instruct` for chipalign/slerp/linear, where mergekit's base_model is the instruct model,
and `base` for the task-vector methods. Checked before any work, so a refusal leaves no output.
"""

import torch

from chipadapt.errors import ChipadaptError

# The inputs merge.non_float_from may name (cfg.models keys).
SOURCES = ("chip", "instruct", "base")
# Rows compared at a time: non-float tensors are small buffers, but nothing here assumes so.
BLOCK_ROWS = 4096


def is_non_float(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex)


def non_float_sources(names: list[str], inputs: list, take_from: str | None) -> dict[str, dict]:
    """{tensor: {"source": the input its values are copied from, "how": for the diagnostics}} for
    every tensor whose dtype is not floating point in some input; `inputs` are the models, chip first.
    Raises, naming the tensor and the models, for one that differs and `take_from` is null."""
    if take_from is not None and take_from not in SOURCES:
        raise ChipadaptError(f"merge.non_float_from: {take_from!r} is not one of {', '.join(SOURCES)} (or null)")
    chip, by_key = inputs[0], {m.key: m for m in inputs}
    plans = {}
    for name in names:
        present = [m for m in inputs if m.has(name)]
        if not any(is_non_float(m.dtype(name)) for m in present):
            continue
        if len({(m.dtype(name), m.shape(name)) for m in present}) > 1:
            described = ", ".join(f"{m.key} {_dtype(m, name)} {list(m.shape(name))}" for m in present)
            raise ChipadaptError(f"tensor {name}: a non-float tensor of different dtypes or shapes ({described})")
        if all(_equal(name, chip, other) for other in present[1:]):
            plans[name] = {"source": chip, "how": "non_float_equal"}
            continue
        differing = " and ".join(f"{m.key} ({m.folder})" for m in present)
        if take_from is None:
            raise ChipadaptError(
                f"tensor {name}: its {_dtype(chip, name)} values differ between {differing}; "
                "non-float tensors (masks, ids) are never interpolated: set merge.non_float_from=chip|instruct|base "
                "to take one model's (mergekit takes its base_model's)"
            )
        source = by_key.get(f"models.{take_from}")
        if source is None:
            raise ChipadaptError(
                f"merge.non_float_from: {take_from} names no input of this merge (models.{take_from} is null)"
            )
        plans[name] = {"source": source, "how": f"non_float_from_{take_from}"}
    return plans


def _dtype(model, name: str) -> str:
    return str(model.dtype(name)).removeprefix("torch.")


def _equal(name: str, a, b) -> bool:
    shape = a.shape(name)
    if not shape:
        return torch.equal(a.get(name), b.get(name))
    return all(
        torch.equal(a.rows(name, s, min(s + BLOCK_ROWS, shape[0])), b.rows(name, s, min(s + BLOCK_ROWS, shape[0])))
        for s in range(0, shape[0], BLOCK_ROWS)
    )


def copy_tensor(name: str, plan: dict, writer, dtype: torch.dtype) -> dict:
    """Write the tensor from its source input unchanged; its diagnostics row."""
    source = plan["source"]
    shape = source.shape(name)
    if not shape:
        writer.write_rows(name, 0, source.get(name).to(dtype))
    for s in range(0, shape[0] if shape else 0, BLOCK_ROWS):
        writer.write_rows(name, s, source.rows(name, s, min(s + BLOCK_ROWS, shape[0])).to(dtype))
    return {"fallback": plan["how"], "copied_from": source.key, "extra_rows": 0}
