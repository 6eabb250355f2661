"""One tensor of a merge: the lambda it gets (merge.schedule) and its merge, streamed a block of rows
at a time from the inputs to the output file, with the rows of a vocabulary embedding only one input
has copied from it (its RowPlan: merge/vocabulary.py)."""

import re

import torch

from chipadapt.errors import ChipadaptError
from chipadapt.merge.methods.base import TensorStats
from chipadapt.merge.non_float import is_non_float
from chipadapt.merge.vocabulary import RowPlan

# Rows per block are chosen so a block holds about this many elements (16 MB in float32).
BLOCK_ELEMENTS = 1 << 22
# Tensors up to this size keep the blocks of the statistics pass for the merge pass instead of
# reading them again (two inputs of 64 MB in float32); only embeddings of large vocabularies
# are read twice.
REUSE_ELEMENTS = 1 << 24


def lambda_schedule(default: float, schedule) -> callable:
    """First matching pattern wins: [{pattern: 'layers\\.(0|1)\\.', lam: 0.3}, ...]."""
    rules = [(re.compile(rule["pattern"]), float(rule["lam"])) for rule in (schedule or [])]

    def lam_for(name: str) -> float:
        return next((lam for pattern, lam in rules if pattern.search(name)), default)

    return lam_for


def check_schedule_matches(schedule, names: list[str]) -> None:
    """A rule that matches no tensor is a typo ('layerz') or another architecture's names: refused,
    before any work, or the merge would run at the default lambda where the user asked for another."""
    for i, rule in enumerate(schedule or []):
        pattern = re.compile(rule["pattern"])
        if not any(pattern.search(name) for name in names):
            ordered = sorted(names)  # a few spread over the model: its naming of layers and parts
            shown = ", ".join(dict.fromkeys(ordered[k * (len(ordered) - 1) // 3] for k in range(4)))
            raise ChipadaptError(
                f"merge.schedule[{i}].pattern: {rule['pattern']!r} matches no tensor of models.chip "
                f"({len(names)} tensors: {shown})"
            )


def merge_tensor(
    method, name: str, lam: float, chip, instruct, base, writer, plan: RowPlan | None = None, dtype=None
) -> dict:
    """Merge one tensor into the writer, a block of rows at a time for chunkable methods. `plan`: for
    a vocabulary embedding, the rows merged and the rows copied from one input (merge/vocabulary.py).
    `dtype`: the one written (merge.out_dtype), else the chip model's. Returns the tensor's diagnostics.
    Non-float tensors never come here (merge/non_float.py): a float merge cast back to bool or int
    would be a mask or ids neither model had."""
    if any(is_non_float(model.dtype(name)) for model in (chip, instruct, base) if model):
        raise ChipadaptError(f"tensor {name}: not floating point; copied as merge/non_float.py plans, never merged")
    shape_c, shape_i = chip.shape(name), instruct.shape(name)
    shape_b = base.shape(name) if base else shape_c
    if plan is None:
        if shape_c != shape_i or shape_b != shape_c:
            raise ChipadaptError(
                f"tensor {name}: shape {shape_c} in models.chip vs {shape_i} in models.instruct"
                + (f" and {shape_b} in models.base" if base else "")
            )
        shared = rows = shape_c[0] if shape_c else 0
        source = chip
    else:
        shared, rows, source = plan.merged, plan.rows, plan.source
    dtype = dtype or chip.dtype(name)

    if not shape_c:  # a scalar
        c, i = chip.get(name), instruct.get(name)
        result = method(name, c, i, base.get(name) if base else None, lam, TensorStats.of(c, i))
        writer.write_rows(name, 0, result.tensor.to(dtype))
        return {**result.diagnostics, "extra_rows": 0}

    rows_per_block = max(1, BLOCK_ELEMENTS // max(1, int(torch.Size(shape_c[1:]).numel())))
    step = rows_per_block if method.chunkable else max(shared, 1)  # else the whole tensor in one block
    blocks = [(a, min(a + step, shared)) for a in range(0, shared, step)]
    reuse = shared * max(1, int(torch.Size(shape_c[1:]).numel())) <= REUSE_ELEMENTS
    kept = {}
    stats = TensorStats()
    for a, z in blocks:  # pass 1: norms and angle over the shared rows
        c, i = chip.rows(name, a, z), instruct.rows(name, a, z)
        stats.add(c, i)
        if reuse:
            kept[a] = (c, i)
    stats.finish()
    diagnostics = {}
    for a, z in blocks:  # pass 2: merge block by block, straight to the output file
        c, i = kept.pop(a) if reuse else (chip.rows(name, a, z), instruct.rows(name, a, z))
        result = method(name, c, i, base.rows(name, a, z) if base else None, lam, stats)
        writer.write_rows(name, a, result.tensor.to(dtype))
        diagnostics = result.diagnostics
    # Rows of tokens only the source's tokenizer has (and its padding past them): copied, not averaged
    # with another model's missing or untrained row.
    for a in range(shared, rows, rows_per_block):
        writer.write_rows(name, a, source.rows(name, a, min(rows, a + rows_per_block)).to(dtype))
    diagnostics["extra_rows"] = rows - shared
    diagnostics["extra_rows_from"] = source.key if rows > shared else ""
    return diagnostics
