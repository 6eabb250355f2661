"""Whether training runs' validation figures (`val/<split>/<metric>`) were read on the same text.

Each run validates up to `data.val_max_bytes` of held-out text per split and records what it read
(data/val_text.py: bytes, documents, a fingerprint of the documents' ids, the bytes of the token the
last document was cut at). Two runs read the same text when the documents are the same and the bytes
differ by less than that last token (another tokenizer cuts the last document a token earlier or
later); then a seq_len or tokenizer sweep compares. Other text is no comparison: the validation of a
seq_len 64 vs 128 sweep moved 4.864 vs 4.698 bits per byte while training moved each by 0.005.
Two runs must also have scored the text by the same rule: a run whose validation predicts every token
(its record says `first_token: scored`, data/val_text.py) scores bytes that a run from before, which left
the first token of each packed row out, did not; their figures and documents differ by those bytes
whatever the models, so they are not compared, as evaluate.py's perplexity runs before and after are not.
So must they have counted a token's bytes alike (`byte_count`, models/token_bytes.py): a run from before
counted a SentencePiece tokenizer's (Llama-2's) about 15% short.
A run from before the record existed (capped in sequences: other text at each seq_len and tokenizer)
is taken to read its reference's text only where every setting that decided it is the same; so is a
run that `trainer.limit_val_batches` cut to its first batches."""

from pathlib import Path

from chipadapt.eval.compare_runs import Run, load_run
from chipadapt.eval.same_items import NotSameItems
from chipadapt.scoring_rules import BYTE_COUNT, FIRST_TOKEN
from chipadapt.validation_change import validation_change_message

VALIDATION_PREFIX = "val/"
# Settings that do not decide which held-out text a run from before the record read.
NOT_TEXT = ("micro_batch_size", "global_batch_size", "num_workers")
OTHER_RULE = "validation scored by another rule"
# What a run lacking each mark of its scoring rule (data/val_text.py records them) did instead.
BEFORE_MARK = {
    FIRST_TOKEN: "a run from before, which left the first token of each row unscored",
    BYTE_COUNT: "a run from before, which counted a token's bytes by decoding it alone",
}


def _splits(metrics: list[str]) -> list[str]:
    """The validation splits the compared metrics read (`val/domain/bpb` -> domain)."""
    return list(dict.fromkeys(m.split("/")[1] for m in metrics if m.startswith(VALIDATION_PREFIX) and m.count("/") > 1))


def _old_settings(run: Run) -> dict:
    """What decided the validation text of a run without a record: its data settings, tokenizer and model."""
    config = run.extra.get("config") or {}
    data = {k: v for k, v in (config.get("data") or {}).items() if k not in NOT_TEXT}
    model = {k: (config.get("model") or {}).get(k) for k in ("name", "path", "source")}
    return {"data": data, "tokenizer": config.get("tokenizer"), "model": model}


def _first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    for key in dict.fromkeys([*a, *b]):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            if found := _first_difference(va, vb, f"{prefix}{key}."):
                return found
        elif va != vb:
            return f"{prefix}{key} {va!r} vs {vb!r}"
    return None


def _batch_limit(run: Run) -> dict:
    """`trainer.limit_val_batches` (where set) and what decides the text its batches hold."""
    config = run.extra.get("config") or {}
    limit = (config.get("trainer") or {}).get("limit_val_batches")
    if limit is None or (isinstance(limit, float) and limit == 1.0):  # the integer 1 is one batch, not all
        return {}
    data = config.get("data") or {}
    return {
        "trainer.limit_val_batches": limit,
        "data.seq_len": data.get("seq_len"),
        "data.micro_batch_size": data.get("micro_batch_size"),
        "tokenizer": config.get("tokenizer"),
    }


def _unrecorded(run: Run) -> str:
    """Why a run has no record of its validation text."""
    stage = ((run.extra.get("config") or {}).get("stage") or {}).get("name")
    return "a run from before data.val_max_bytes" if stage in (None, "dapt") else f"stage {stage} does not record it"


def text_difference(reference: Run, run: Run, splits: list[str]) -> str | None:
    """Why `run` validated on other text than `reference` in `splits`; None where it is the same."""
    limits = _batch_limit(reference), _batch_limit(run)
    if (limits[0] or limits[1]) and (found := _first_difference(*limits)):
        # the batches it cut validation to hold the first N x micro-batch x seq_len tokens of its text
        return f"validation cut to batches by trainer.limit_val_batches, and {found}"
    a, b = reference.extra.get("val_text"), run.extra.get("val_text")
    if a is None or b is None:
        if a is None and b is None and (config := _first_difference(_old_settings(reference), _old_settings(run))):
            return f"validation text not recorded ({_unrecorded(run)}) and {config}"
        if a is None and b is None:
            return None  # the same code and settings: the same text
        if b is None:
            return f"validation text not recorded ({_unrecorded(run)})"
        return f"{reference.label} did not record its validation text ({_unrecorded(reference)})"
    for split in splits:
        ta, tb = a.get(split), b.get(split)
        if ta is None or tb is None:
            continue  # a split one run lacks: its cells are blank
        if ta.get("documents_fingerprint") != tb.get("documents_fingerprint"):
            return f"validation text differs: {split} reads other documents"
        for mark, before in BEFORE_MARK.items():
            if (rule := ta.get(mark)) != tb.get(mark):
                return f"{OTHER_RULE}: {split} {mark} {rule!r} vs {tb.get(mark)!r} (None: {before})"
        slack = max(ta.get("cut_token_bytes", 0), tb.get("cut_token_bytes", 0))
        gap = abs(ta["bytes"] - tb["bytes"])
        if gap and gap >= slack:
            return f"validation text differs: {split} {ta['bytes']} vs {tb['bytes']} bytes"
    return None


def validation_text_refusal(a_label: str, a_folder: Path, b_label: str, b_folder: Path) -> None:
    """NotSameItems where two training runs' final validations, whose per-item files compare.py would
    pair (stages/validation_items.py), read other held-out text (`text_difference`, over every split
    either recorded): the same item number is then another document, or another part of one."""
    a, b = load_run(a_folder), load_run(b_folder)
    a.label, b.label = a_label, b_label
    texts = [run.extra.get("val_text") or {} for run in (a, b)]
    splits = list(dict.fromkeys([*texts[0], *texts[1]]))
    why = text_difference(a, b, splits)
    if why and why.startswith(OTHER_RULE):
        raise NotSameItems(
            f"{b_label}'s validation was scored by another rule than {a_label}'s ({why}): every document's "
            "score differs by it, whatever the models; validate both with the same version"
        )
    if why:
        raise NotSameItems(
            f"{b_label} validated on other held-out text than {a_label} ({why}): its per-document scores are "
            "of other documents; validate both on the same text (data.val_max_bytes, the validation sources)"
        )


def validation_notes(runs: list[Run], metrics: list[str]) -> list[str]:
    """Marks each training run whose validation text is not the first one's (`run.extra["val_note"]`),
    for the compared `val/` metrics; returns one line per run marked, and one per resume of a run that
    went on validating on other text (its val/ curve is of two texts; its last figures, the ones
    compared here, are of the later one)."""
    splits = _splits(metrics)
    trained = [r for r in runs if r.kind == "train" and any(m.startswith(VALIDATION_PREFIX) for m in r.metrics)]
    if not splits:
        return []
    lines = [
        f"{run.label}: {validation_change_message(change)}"
        for run in trained
        for change in run.extra.get("validation_changes") or []
    ]
    if len(trained) < 2:
        return lines
    reference = trained[0]
    for run in trained[1:]:
        why = text_difference(reference, run, splits)
        if why:
            run.extra["val_note"] = why
            lines.append(f"{run.label}: val/ figures not comparable with {reference.label}'s: {why}")
    return lines
