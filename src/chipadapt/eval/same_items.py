"""Whether two runs' records with the same id are the same item, before a paired test compares them.

An id alone does not say so: two MCQ files both numbered q0..q5 hold other questions, and a perplexity
run with max_tokens_per_document=64 scores a prefix of the document another run scored whole. So the
fields a task writes about the item itself (never about the model's answer) are compared:
- `content` (a hash of what defines the item, where a task writes one), `question`, `query`, `prompt`,
  `kwargs`, `reference` (the answer, the references, the relevant passages), `subject`, `category`,
  `type`, `split`: equal wherever both records carry the field (a field one record lacks, as in a
  file written before it existed, says nothing either way);
- MCQ: the number of choices (its `loglikelihoods`, one per choice);
- perplexity: `bytes`, the text scored. With the same token count (the same tokenizer) it must be
  equal. With another token count it may differ by up to BYTES_SLACK: another tokenizer leaves another
  first token unscored (bits per byte compare across tokenizers), while a prefix, a character limit or a
  token budget that cut a document short changes it by much more.
Rule: items that differ are never paired. Where at least half of the items the two runs share differ,
the runs evaluated other data, and the few that agree most likely agree by chance (an MCQ answer index
matches one time in four): the task is not paired (NotSameItems). Otherwise the differing ones are left
out and counted (an edited data file, a document the token budget cut in one run).
Per-token figures (a score named `.ppl` or `.loss`: the mean over the item's tokens) compare only where
both runs counted the same tokens in the same text: another tokenizer cuts the text into other units,
so its perplexity is per another unit and a lower one says nothing of the model (bits per byte, per
the text's bytes, compares). `other_tokens` finds the first shared item whose `tokens` differ.
Before any item, the task's settings that decide how much of each item is scored (SCORED_PART, from each
run's manifest) must be equal: runs that cut documents at other limits differ on the long documents only,
and leaving those out (28 of 82 in one comparison) would give a verdict about the short ones.
"""

from chipadapt.errors import ChipadaptError

FIELDS = ("content", "question", "query", "prompt", "kwargs", "reference", "subject", "category", "type", "split")
# Bytes of the unscored first token: no first token of a usual text is longer (GPT-2-style tokenizers'
# longest pieces are whitespace runs and code punctuation).
BYTES_SLACK = 16
# A task's settings (eval.<task>.KEY) that cut its items: perplexity's character limit, token limit and
# split budget. Settings that change how the model answers (max_new_tokens, chat) leave the items whole
# and the same: a paired test of them is a fair test of the setting.
SCORED_PART = ("max_tokens", "max_tokens_per_document", "max_chars_per_document")


class NotSameItems(ChipadaptError):
    """Two runs' items of a task that a paired test cannot compare; the message says why."""


def _choices(item: dict) -> int | None:
    values = item.get("loglikelihoods")
    return len(values) if isinstance(values, list) else None


def difference(a: dict, b: dict) -> tuple[str, object, object] | None:
    """(field, a's value, b's value) of the first way two records with one id differ; None if none does."""
    for field in FIELDS:
        if field in a and field in b and a[field] != b[field]:
            return field, a[field], b[field]
    if _choices(a) is not None and _choices(b) is not None and _choices(a) != _choices(b):
        return "number of choices", _choices(a), _choices(b)
    if isinstance(a.get("bytes"), int) and isinstance(b.get("bytes"), int):
        slack = 0 if a.get("tokens") == b.get("tokens") else BYTES_SLACK
        if abs(a["bytes"] - b["bytes"]) > slack:
            return "bytes", a["bytes"], b["bytes"]
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def same_items(
    task: str, a_label: str, b_label: str, a: dict[str, dict], b: dict[str, dict]
) -> tuple[dict[str, dict], list[str]]:
    """b's items without those that differ from a's record with the same id, and the ids left out;
    NotSameItems where at least half of the shared ids differ (module docstring)."""
    shared = [key for key in a if key in b]
    differing = {key: d for key in shared if (d := difference(a[key], b[key])) is not None}
    if differing and 2 * len(differing) >= len(shared):
        first = next(iter(differing))
        field, va, vb = differing[first]
        raise NotSameItems(
            f"{task}: {len(differing)} of {len(shared)} items of {b_label} differ from {a_label}'s "
            f"with the same id (first: {first!r}, {field} {_short(va)} vs {_short(vb)}): the runs evaluated "
            "other items, which a paired test cannot compare"
        )
    return {key: item for key, item in b.items() if key not in differing}, list(differing)


def same_settings(task: str, a_label: str, b_label: str, a: dict | None, b: dict | None) -> None:
    """NotSameItems where the two runs' configs of `task` (None: not recorded, as in a folder older than
    manifests, which says nothing) set a SCORED_PART key differently. A key one config lacks is unset:
    configs are recorded whole, so it is missing only where the version had no such limit."""
    if a is None or b is None:
        return
    for key in SCORED_PART:
        if a.get(key) != b.get(key):
            raise NotSameItems(
                f"{task}: {b_label} was scored with other limits than {a_label} ({key} {a.get(key)!r} vs "
                f"{b.get(key)!r}): the documents a limit cuts are the long ones, and leaving them out would "
                "compare the short ones only; evaluate both with the same limits"
            )


PER_TOKEN = (".ppl", ".loss")
OTHER_TOKENIZER = "the runs use different tokenizers (per-token figures; compare bpb)"


def per_token(metric: str) -> bool:
    """Whether a score is a mean over the item's tokens (module docstring)."""
    return metric.endswith(PER_TOKEN)


def other_tokens(task: str, a_label: str, b_label: str, a: dict[str, dict], b: dict[str, dict]) -> str | None:
    """Why the two runs' per-token figures of `task` do not pair: the first shared item whose token
    count differs (the runs use different tokenizers); None where every shared item has the same count."""
    for key in a:
        if key in b and isinstance(a[key].get("tokens"), int) and isinstance(b[key].get("tokens"), int):
            if a[key]["tokens"] != b[key]["tokens"]:
                return (
                    f"{OTHER_TOKENIZER}: {key!r} is "
                    f"{a[key]['tokens']} tokens in {a_label}, {b[key]['tokens']} in {b_label}"
                )
    return None
