"""The dtypes a merge writes: a null merge.out_dtype keeps each float tensor of the chip model in its own
dtype and its config.json's dtype as it is; a set one casts every float tensor and rewrites config.json.
Whether one merge.out_dtype stands for the null (a rerun compares them: merge/resolved_settings.py; the
mergekit export names it: merge/mergekit_export.py), and if not, why."""

from collections import Counter

from chipadapt.merge.mergekit_recipe import DTYPES

# config.json's dtype keys (transformers 5 and before): merge.out_dtype rewrites them, null keeps the chip's.
CONFIG_DTYPE_KEYS = ("dtype", "torch_dtype")


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def float_dtypes(chip) -> dict[str, int]:
    """{dtype: tensors} of the chip model's float tensors: a null merge.out_dtype writes each in its own."""
    return dict(Counter(dtype_name(chip.dtype(name)) for name in chip.names() if chip.dtype(name).is_floating_point))


def written_dtype(chip) -> str | None:
    """The one dtype a null merge.out_dtype stands for: that of every float tensor of the chip model, where
    they share one that merge.out_dtype can name and its config.json says the same (merge.out_dtype would
    rewrite a different one); else None, and no_out_dtype_reason says why."""
    return None if no_out_dtype_reason(chip) else next(iter(float_dtypes(chip)))


def no_out_dtype_reason(chip) -> str | None:
    """Why no merge.out_dtype writes the files a null one writes from `chip`; None where one does."""
    dtypes = float_dtypes(chip)
    if not dtypes:
        return "models.chip has no float tensor; an out_dtype would only rewrite config.json's dtype"
    if len(dtypes) > 1:
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(dtypes.items()))
        return f"models.chip mixes {counts}; no one out_dtype writes what null wrote"
    (name,) = dtypes
    if name not in DTYPES:  # float64, float8: kept as they are, and no out_dtype a recipe can give
        return f"models.chip's float tensors are {name}, which no out_dtype ({', '.join(DTYPES)}) writes"
    said = [chip.config[key] for key in CONFIG_DTYPE_KEYS if chip.config.get(key, name) != name]
    if said:
        # The tensors out_dtype=name writes are the same bytes; only config.json's dtype field differs.
        return (
            f"models.chip's float tensors are all {name} but its config.json says {said[0]}; out_dtype={name} "
            "writes the same tensors, only config.json's dtype differs"
        )
    return None
