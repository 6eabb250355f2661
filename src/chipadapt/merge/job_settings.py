"""A merge job's settings as a rerun compares them with what its folders record (the run folder's
manifest.json, the output's merge_manifest.json): read as train.py's completed-run check reads its own
(run_settings: folders by their config key, so a sweep folder moved elsewhere or a cache on another
machine is the same job; what matters of a model is its content, compared by fingerprint).

`overwrite` is left out: it says whether the job may replace an earlier output, not what the output
is, so a merge made with overwrite=true is the same job as the command without it. Everything else
counts, as in train.py: `eval` (the evaluation the run folder's results.json records; a job passed as
done would keep the earlier one's figures) and `logger` (where the records went)."""

from chipadapt.io.dotted_keys import flatten
from chipadapt.run_settings import by_name, describe, named_folders, with_earlier_meanings

NOT_COMPARED = ("overwrite",)


def settings(config: dict) -> dict[str, object]:
    """A resolved merge config as dotted keys, its folders named by their `paths.*` key, without what
    is not compared."""
    folders = named_folders(config.get("paths"))
    return {key: by_name(value, folders) for key, value in flatten(config) if key not in NOT_COMPARED}


def _compared(recorded: dict, config: dict) -> tuple[dict, dict]:
    """Both sides' settings; a key added since `recorded` was written is read at its earlier meaning."""
    now = settings(config)
    return with_earlier_meanings(settings(recorded), now), now


def _changed_keys(recorded: dict, config: dict) -> tuple[list[str], dict, dict]:
    # One rule for both questions: a key one side lacks reads as null there. A sweep's preflight asks
    # changed_settings and the job same_settings; compared by dict equality, a key null now and absent
    # from the record passed the preflight and then refused the job partway through the sweep.
    # A null that resolves to the other side's value (merge/resolved_settings.py) is no change; a change
    # is still named with the values as each side wrote them.
    # Imported here: it reads model folders (torch), and merge.py's job refuses a bad output before torch.
    from chipadapt.merge.resolved_settings import with_nulls_resolved

    before, now = _compared(recorded, config)
    same_before, same_now = with_nulls_resolved(before, now, recorded, config)
    keys = [key for key in dict.fromkeys([*before, *now]) if same_before.get(key) != same_now.get(key)]
    return keys, before, now


def same_settings(recorded: dict, config: dict) -> bool:
    return not _changed_keys(recorded, config)[0]


def changed_settings(recorded: dict, config: dict) -> list[str]:
    """`merge.lam: 1.0 -> 0.7`, one entry per change from `recorded` to `config`. A merge.out_dtype set on
    one side only, where the null stands for no one dtype, says why: an export from before such a null was
    exported as null named a dtype, and its rerun was refused with no reason."""
    from chipadapt.merge.resolved_settings import OUT_DTYPE, null_out_dtype_reason  # as _changed_keys

    keys, before, now = _changed_keys(recorded, config)
    changes = describe(keys, before, now)
    if OUT_DTYPE not in keys or (before.get(OUT_DTYPE) is None) == (now.get(OUT_DTYPE) is None):
        return changes
    reason = null_out_dtype_reason(config)
    if reason is None:
        return changes
    return [
        f"{change} ({reason})" if OUT_DTYPE in change.partition(": ")[0].split(", ") else change for change in changes
    ]
