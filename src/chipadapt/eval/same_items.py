"""Whether two runs' records with the same id are the same item, before a paired test compares them.

An id alone does not say so: two MCQ files both numbered q0..q5 hold other questions, and a perplexity
run with max_tokens_per_document=64 scores a prefix of the document another run scored whole. So the
fields a task writes about the item itself (never about the model's answer) are compared:
- `content` (a hash of what defines the item, where a task writes one), `question`, `query`, `prompt`,
  `kwargs`, `reference` (the answer, the references, the relevant passages), `subject`, `category`,
  `type`, `split`: equal wherever both records carry the field (a field one record lacks, as in a
  file written before it existed, says nothing either way);
- MCQ: the number of choices (its `loglikelihoods`, one per choice);
- perplexity: `bytes`, the text scored, must be equal. The evaluation scores every byte of a document
  (its items say `first_token: scored`, eval/tasks/perplexity.py), so two tokenizers' items of one text
  carry the same bytes, and any difference is other text (a prefix, a character limit, a token budget
  that cut a document short). A training run's validation scores every byte too and marks its items
  alike (stages/validation_items.py), but for the last document its byte budget cut, whose record carries
  `cut_token_bytes`: two tokenizers cut it within that token, so its bytes may differ by less. Items
  without the mark (a training run's validation from before, which left the first token of each packed
  row unscored) may differ by up to BYTES_SLACK where their token counts differ: another tokenizer cuts
  the rows at other tokens.
Rule: items that differ are never paired. Where at least half of the items the two runs share differ,
the runs evaluated other data, and the few that agree most likely agree by chance (an MCQ answer index
matches one time in four): the task is not paired (NotSameItems). Otherwise the differing ones are left
out and counted (an edited data file, a document the token budget cut in one run).
Per-token figures (a score named `.ppl` or `.loss`, a training run's `/ppl` or `/loss`: the mean over
the item's tokens) compare only where both runs counted the same tokens in the same text: another
tokenizer cuts the text into other units, so its perplexity is per another unit and a lower one says
nothing of the model (bits per byte, per the text's bytes, compares).
`other_tokens` finds the first shared item whose `tokens` differ.
Before any item, the task's settings (each run's recorded config of the task, `settings_differ`) must be
equal wherever they change what is measured: another preset, number of shots, prompt style, generation
length, chat template, context length or scorer option scores the same item another way, and a paired
difference would mix the two models' difference with the settings'. Only NOT_MEASURING settings (speed,
files written beside the scores) and SELECTING ones (which items: the runs then pair on the items both
scored) may differ. Where both runs evaluated the same model, loaded the same way, the differing setting
is what the comparison is about: it pairs, with a warning naming it. The settings that decide how much
of each item is scored (SCORED_PART) are never exempt: runs that cut documents at other limits differ on
the long documents only, and leaving those out (28 of 82 in one comparison) would give a verdict about
the short ones. Nor are the SCORING_RULE ones, recorded by the task in its results rather than set in
its config (eval/evaluated_tasks.py): a perplexity run from before the first token of each document was
scored differs from one after on every item by that token, whatever the models; one from before a token's
bytes were its piece's own (`byte_count`) counted a SentencePiece tokenizer's bytes wrong by about 15%.
Per-token figures pair split by split: `other_tokens` looks only at the items of the metric's split.
A run that scored the reference solutions (verilog's `references_only`) pairs with no model's run, even one
of the same folder's model: the reference solutions are not a model.
"""

import dataclasses
import os

from chipadapt.errors import ChipadaptError
from chipadapt.scoring_rules import BYTE_COUNT, FIRST_TOKEN, FIRST_TOKEN_SCORED

FIELDS = ("content", "question", "query", "prompt", "kwargs", "reference", "subject", "category", "type", "split")
# Bytes of an unscored first token of a training validation row: no token of a usual text is longer
# (GPT-2-style tokenizers' longest pieces are whitespace runs and code punctuation). Never for items that
# score every byte (ALL_BYTES).
BYTES_SLACK = 16
ALL_BYTES = (
    FIRST_TOKEN,
    FIRST_TOKEN_SCORED,
)  # the mark of an item whose first token was scored (eval/tasks/perplexity.py)
# A task's settings (eval.<task>.KEY) that cut its items: perplexity's character limit, token limit and
# split budget. Unset where a config lacks them (configs are recorded whole: older versions had no limit).
SCORED_PART = ("max_tokens", "max_tokens_per_document", "max_chars_per_document")
# Settings (the last part of a dotted key) that never change an item's score: how fast answers come (up to
# rounding, as eval/task_reruns.py's SPEED_KEYS) and what a task writes beside its scores.
# answer_without_context only adds the no-passage answers (rougeL, rag_gain) in a generation of their own:
# rougeL_rag is the same either way (qa.py), and a score one run lacks is not paired anyway.
NOT_MEASURING = ("batch_size", "workers", "index_dir", "misses_file", "misses_k", "answer_without_context")
# Settings that pick which items are scored, never how one is (mcq: the first N of each subject, then the
# first N; perplexity: the first N documents): runs that differ pair on the items both scored.
SELECTING = ("limit", "max_per_subject", "max_documents", "subjects")
# verilog's setting that scores the reference solutions instead of a model's designs: such a run measured no
# model, so it never pairs with a model's run, whatever the two manifests say of the model.
REFERENCES_ONLY = "references_only"
# Settings a task records in its results (not its config) that change how every item is scored: unset in
# a run from before the task recorded them, which scored the other way (module docstring; scoring_rules.py).
SCORING_RULE = (FIRST_TOKEN, BYTE_COUNT)


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
        all_bytes = all(item.get(ALL_BYTES[0]) == ALL_BYTES[1] for item in (a, b))
        gap = abs(a["bytes"] - b["bytes"])
        if all_bytes:  # the same text, but the last document of a byte budget, cut within one token
            cut = max(a.get("cut_token_bytes", 0), b.get("cut_token_bytes", 0))
            if gap and gap >= cut:
                return "bytes", a["bytes"], b["bytes"]
        elif gap > (0 if a.get("tokens") == b.get("tokens") else BYTES_SLACK):
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


@dataclasses.dataclass(frozen=True)
class RecordedFile:
    """A data file or folder a run read, as its manifest records it: equal by content (a checkout moved
    elsewhere reads the same data under another path), shown with its path."""

    fingerprint: str
    path: str = dataclasses.field(compare=False)

    def __repr__(self) -> str:
        return f"{self.path} ({self.fingerprint[:12]})"


def flat_settings(settings: dict, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of a task's config (`splits.domain.path`, `rouge.use_stemmer`)."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(flat_settings(value, f"{prefix}{key}."))
        elif isinstance(value, list) and value and key not in SELECTING:  # `path.0`, `path.1`: as the manifest
            # records each file read; a selecting list (mcq's subjects) is one setting, compared whole
            out.update(flat_settings(dict(zip(map(str, range(len(value))), value)), f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _path_of(value: object) -> object:
    path = value.path if isinstance(value, RecordedFile) else value
    return os.path.realpath(path) if isinstance(path, str) and path else path


def settings_differ(
    a: dict, b: dict, ignored: tuple[str, ...] | frozenset[str] = NOT_MEASURING
) -> list[tuple[str, object, object]]:
    """(dotted key, a's value, b's value) of each setting the two configs of a task set differently, but
    `ignored` ones (by the last part of the key). A key one config lacks says nothing (a config written
    before the setting existed), but a SCORED_PART key, which is unset there. A data file is compared by
    content where both runs recorded reading it (RecordedFile)."""
    fa, fb = flat_settings(a), flat_settings(b)
    keys = dict.fromkeys([*fa, *fb])
    differ = []
    for key in keys:
        last = key.rsplit(".", 1)[-1]
        if last in ignored:
            continue
        if isinstance(fa.get(key), RecordedFile) != isinstance(fb.get(key), RecordedFile):
            # Content recorded on one side only (a file the other run did not read, at 0 shots; or a run of
            # an earlier version): compared by path. The same path says nothing more; another path differs.
            if _path_of(fa.get(key)) != _path_of(fb.get(key)):
                differ.append((key, fa.get(key), fb.get(key)))
            continue
        if key in SCORED_PART or key in SCORING_RULE or (key in fa and key in fb):
            if fa.get(key) != fb.get(key):
                differ.append((key, fa.get(key), fb.get(key)))
    return differ


def _listed(differ: list[tuple[str, object, object]]) -> str:
    return "; ".join(f"{key} {va!r} vs {vb!r}" for key, va, vb in differ)


def _references_only(settings: dict) -> bool:
    """Whether a task's config scored the reference solutions (a config without the key scored a model)."""
    return flat_settings(settings).get(REFERENCES_ONLY) is True


def same_settings(
    task: str, a_label: str, b_label: str, a: dict | None, b: dict | None, same_model: bool = False
) -> list[str]:
    """NotSameItems where the two runs' configs of `task` (None: not recorded, as in a folder older than
    manifests, which says nothing) differ in a setting that changes what is measured (module docstring), or
    where one of them scored the reference solutions (REFERENCES_ONLY), whatever `same_model` says;
    else the warnings a paired difference needs: SELECTING settings that differ, and, with `same_model`
    (both runs evaluated the same model, loaded the same way), the measuring settings that differ."""
    if a is None or b is None:
        return []
    references = [label for label, settings in ((a_label, a), (b_label, b)) if _references_only(settings)]
    if len(references) == 1:
        raise NotSameItems(
            f"{task}: {references[0]} scored the reference solutions ({REFERENCES_ONLY}=true), the other a "
            "model's answers: the reference solutions are not a model, so a paired difference would say nothing "
            "of either; compare each model's run with a model's"
        )
    differ = settings_differ(a, b)
    rule = [d for d in differ if d[0] in SCORING_RULE]
    if rule:
        raise NotSameItems(
            f"{task}: {b_label} was scored by another rule than {a_label} ({_listed(rule)}; None: a run from "
            "before the rule was recorded): every item differs by it, whatever the models; evaluate both "
            "with the same version"
        )
    cut = [d for d in differ if d[0] in SCORED_PART]
    if cut:
        raise NotSameItems(
            f"{task}: {b_label} was scored with other limits than {a_label} ({_listed(cut)}): the documents "
            "a limit cuts are the long ones, and leaving them out would compare the short ones only; evaluate "
            "both with the same limits"
        )
    selecting = [d for d in differ if d[0] in SELECTING]
    measuring = [d for d in differ if d[0] not in SELECTING]
    if measuring and not same_model:
        files = [d for d in measuring if "path" in d[0].split(".") or any(isinstance(v, RecordedFile) for v in d[1:])]
        why = (
            # another data file holds other items (or other answers under the same ids), not the same ones
            "they read other data files, whose items are other items (or the same ids with other content), so "
            "a paired difference would mix the models' difference with the data's; evaluate both on the same data"
            if files
            else "they score the same items another way, so a paired difference would mix the models' difference "
            "with the settings'; evaluate both with the same settings"
        )
        raise NotSameItems(
            f"{task}: {b_label} was evaluated with other settings than {a_label} ({_listed(measuring)}): {why}"
        )
    notes = []
    if measuring:
        notes.append(
            f"the same model evaluated with other settings ({_listed(measuring)}): the difference is the settings'"
        )
    if selecting:
        notes.append(f"other items selected ({_listed(selecting)}): paired on the items both scored")
    return notes


PER_TOKEN = (".ppl", ".loss", "/ppl", "/loss")  # an evaluation's `corpus.ppl`, a training run's `val/domain/ppl`
OTHER_TOKENIZER = "the runs use different tokenizers (per-token figures; compare bpb)"


def per_token(metric: str) -> bool:
    """Whether a score is a mean over the item's tokens (module docstring)."""
    return metric.endswith(PER_TOKEN)


def other_tokens(
    task: str, a_label: str, b_label: str, a: dict[str, dict], b: dict[str, dict], metric: str | None = None
) -> str | None:
    """Why the two runs' per-token figures of `task` do not pair: the first shared item whose token
    count differs (the runs use different tokenizers); None where every shared item has the same count.
    With `metric`, only the items that carry it count: a split's `general.ppl` pairs where the general
    documents have the same tokens, whatever the domain ones have."""
    for key in a:
        if metric is not None and (
            metric not in a[key].get("scores", {}) or metric not in b.get(key, {}).get("scores", {})
        ):
            continue
        if key in b and isinstance(a[key].get("tokens"), int) and isinstance(b[key].get("tokens"), int):
            if a[key]["tokens"] != b[key]["tokens"]:
                return (
                    f"{OTHER_TOKENIZER}: {key!r} is "
                    f"{a[key]['tokens']} tokens in {a_label}, {b[key]['tokens']} in {b_label}"
                )
    return None
