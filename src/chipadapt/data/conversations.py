"""SFT sources: chat JSONL (`messages`) and prompt/completion JSONL (any two keys), as conversations;
or a Hugging Face dataset (`format: hf`, `split`, `subset`, `streaming`) whose rows are either
(a `messages_key` column, default `messages`, else `prompt_key`/`completion_key`).

Attributes (SteerLM) come from the record's `attributes` or `steerlm_attributes` (OASST export, 0-4),
or from HelpSteer's top-level columns (helpfulness, correctness, coherence, complexity, verbosity,
0-4). Every supported labelling uses SteerLM's 0-4 scale, so a value off it (`quality: 9` from a
0-10 rating, a word) is refused: rounded into the attribute string it would teach the model a level
it is never asked for. A null value means "not labelled".

A record without an assistant turn (or with `messages: []`) teaches nothing: it is left out, counted
per source and warned about. A conversation whose first turn (after the system message) is the
assistant's is refused: its reply answers nothing, and most chat templates cannot render it (a
greeting belongs in the system message, or after the user turn it answers). So is a system message
after the first turn (see LATER_SYSTEM), and a turn whose role is not system, user or assistant,
named by its number and role. So is a user or assistant turn with no text: a user turn that asks
nothing, or an empty answer the model would be taught to give (an empty system message is none).

An assistant turn's own `attributes` (chat.py's /save, when /attributes changed between replies) are
validated as a record's and kept per turn (`Conversation.reply_attributes`); the stages that train on
attributes refuse them, since a template has one attribute string per conversation (data/template=model
puts it in the system message), so a reply's own could not be rendered as it was generated.

Held out by group: a source whose records share a key, as OASST's threads share the
`message_tree_id` of the tree they were cut from (each thread one path to a reply, its turns before that
its siblings' too), sets `group_by: message_tree_id`, and every conversation of a group is held out
or trained on together; by its own id, a held-out thread's earlier turns are trained on in its siblings.
"""

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from chipadapt.data.eda_split import is_eval_row
from chipadapt.errors import ChipadaptError
from chipadapt.io.hf_dataset import is_dataset_path
from chipadapt.io.jsonl import jsonl_records

log = logging.getLogger(__name__)

HELPSTEER_KEYS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ROLES = {"user", "assistant", "system"}
FORMATS = ("chat", "prompt_completion", "hf")
ATTRIBUTE_SCALE = (0, 4)  # OASST steerlm_attributes, HelpSteer 1 and 2, annotate's clamped predictions
# Refused, not dropped or moved: SteerLM's attributes and ChipNeMo's format have one place for a system
# message, at the start, and models' own templates differ on later ones (ChatML renders them where they
# stand, Llama 2's and Mistral's refuse them), so the same data would train another text on each model.
LATER_SYSTEM = (
    "turn {number} is a system message after the conversation began; a conversation has one system "
    "message, its first turn: fold this one into it, or into the user turn it instructs"
)


@dataclass
class Conversation:
    id: str
    messages: list[dict]
    attributes: dict = field(default_factory=dict)
    where: str = ""  # file:line (or dataset row) for messages about this conversation
    group: str = ""  # the source's `group_by` value: conversations held out together ("": by its own id)
    reply_attributes: dict = field(default_factory=dict)  # turn number (from 1) -> an assistant turn's own

    @property
    def holdout_key(self) -> str:
        """What decides whether the conversation is held out (data/holdout.held_out): its group, else its id."""
        return self.group or self.id


@dataclass
class ConversationSource:
    """One conversation source of a blend (`data.sources.NAME`, `annotate.input`, ...). The defaults
    live here only; YAML sets what differs."""

    path: str
    format: str = "chat"  # chat | prompt_completion | hf
    messages_key: str = "messages"
    prompt_key: str = "prompt"
    completion_key: str = "completion"
    weight: float = 1.0  # sampling multiplier per epoch (SFT blends)
    epochs: float = 1.0
    exclude_eval_split: dict | None = None  # {fraction}: keep eda_script's evaluation rows out of training
    only_eval_split: dict | None = None  # {fraction}: just those rows (a validation source)
    # `format: hf`: the split, the subset (config name) and whether to stream it.
    split: str = "train"
    subset: str | None = None
    streaming: bool = False
    # The record key whose value groups conversations held out together (module docstring); null: each
    # conversation by its own id.
    group_by: str | None = None


@dataclass
class SourceConversations:
    source: ConversationSource
    conversations: list[Conversation]
    no_answer: int  # records left out: no assistant turn, nothing to learn or rate


# A split of {fraction: null} (eval.eda_script.eval_fraction=null): none, every row of the file.
NO_SPLIT = {"fraction": None}


def default_key(name: str) -> str:
    """A source name under `data.sources`, or already a full config key (`annotate.input`)."""
    return name if "." in name else f"data.sources.{name}"


def conversation_source(values: dict, key: str) -> ConversationSource:
    """A ConversationSource from a config entry; a misspelt setting would otherwise be ignored
    (`wieght: 5` training at weight 1), so an unknown one is refused, naming `key`."""
    if not isinstance(values, dict):
        raise ChipadaptError(f"{key}: expected a source with a `path`, got {values!r}")
    fields = [f.name for f in dataclasses.fields(ConversationSource)]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ChipadaptError(f"{key}.{unknown[0]}: unknown source setting (known: {', '.join(fields)})")
    if values.get("path") in (None, ""):
        raise ChipadaptError(f"{key}.path: required, not set")
    if values.get("format", "chat") not in FORMATS:
        raise ChipadaptError(f"{key}.format: {values['format']!r} is not one of {', '.join(FORMATS)}")
    for name in ("weight", "epochs"):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ChipadaptError(f"{key}.{name}: {value!r} is not a non-negative number")
    for name in ("exclude_eval_split", "only_eval_split"):
        # {fraction: null}, eval.eda_script.eval_fraction=null's: no split, every row
        values = {**values, name: None} if values.get(name) == NO_SPLIT else values
        value = values.get(name)
        fraction = value.get("fraction") if isinstance(value, dict) else None
        if value is not None and (
            set(value) != {"fraction"} or not isinstance(fraction, (int, float)) or not 0 < fraction < 1
        ):
            raise ChipadaptError(f"{key}.{name}: expected {{fraction: a number between 0 and 1}}, got {value!r}")
    group_by = values.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or not group_by):
        raise ChipadaptError(f"{key}.group_by: expected the name of a record key (or null), got {group_by!r}")
    return ConversationSource(**{k: v for k, v in values.items() if v is not None})  # null: the default


def _attribute_value(where: str, name: str, value):
    """The value, None when unlabelled; anything off SteerLM's scale names the record and attribute."""
    if value is None:
        return None
    low, high = ATTRIBUTE_SCALE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ChipadaptError(
            f"{where}: attribute {name!r} is {value!r}, not a number on SteerLM's {low}-{high} scale "
            f"(rescale it to {low}-{high}, or set it to null if unlabelled)"
        )
    return value


def _attributes(where: str, record: dict) -> dict:
    for key in ("attributes", "steerlm_attributes"):
        labels = record.get(key)
        if labels is None:
            continue
        if not isinstance(labels, dict):
            raise ChipadaptError(f"{where}: {key!r} must be an object of attribute: 0-4, got {labels!r}")
        values = {k: _attribute_value(where, k, v) for k, v in labels.items()}
        return {k: v for k, v in values.items() if v is not None}
    values = {k: _attribute_value(where, k, record.get(k)) for k in HELPSTEER_KEYS}
    return {k: v for k, v in values.items() if v is not None}


def _kind(value) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def check_turns(where: str, key: str, messages) -> None:
    """A chat record's turns, each {role: system|user|assistant, content: str}, a system message only
    as the first; the first bad turn is named by its number (from 1) and role."""
    if not isinstance(messages, list):
        raise ChipadaptError(f"{where}: {key!r} must be a list of turns, got {_kind(messages)}")
    for number, turn in enumerate(messages, 1):
        if not isinstance(turn, dict) or "role" not in turn:
            raise ChipadaptError(
                f"{where}: {key!r} turn {number} is {turn!r:.60}, not an object with a role and content"
            )
        role = turn["role"]
        if role not in ROLES:
            hint = f" (lower-case: {role.lower()!r})" if isinstance(role, str) and role.lower() in ROLES else ""
            raise ChipadaptError(
                f"{where}: {key!r} turn {number} has role {role!r}, not one of system, user, assistant{hint}"
            )
        if "content" not in turn:
            raise ChipadaptError(f"{where}: {key!r} turn {number} ({role}) has no 'content'")
        if not isinstance(turn["content"], str):
            raise ChipadaptError(
                f"{where}: {key!r} turn {number} ({role}) has 'content' {_kind(turn['content'])}, not a string"
            )
        if role == "system" and number > 1:
            raise ChipadaptError(f"{where}: {LATER_SYSTEM.format(number=number)}")
        if role != "system" and not turn["content"].strip():
            raise ChipadaptError(f"{where}: {key!r} turn {number} ({role}) is empty; {EMPTY[role]}")


EMPTY = {
    "user": "it asks nothing: give it its text or leave the conversation out",
    "assistant": "trained on, it would teach an empty answer: give it its text or leave the conversation out",
}


def _reply_attributes(where: str, messages: list[dict]) -> dict:
    """{turn number: attributes} of the assistant turns that carry their own (null: none)."""
    out = {}
    for number, turn in enumerate(messages, 1):
        labels = turn.get("attributes")
        if labels is None:
            continue
        if turn["role"] != "assistant" or not isinstance(labels, dict):
            raise ChipadaptError(
                f"{where}: turn {number} ({turn['role']}) has 'attributes' {labels!r:.60}; only an assistant turn "
                "carries its own, an object of attribute: 0-4"
            )
        values = {k: _attribute_value(f"{where}: turn {number}", k, v) for k, v in labels.items()}
        out[number] = {k: v for k, v in values.items() if v is not None}
    return out


def read_conversations(name: str, spec: dict, key: str | None = None) -> list[Conversation]:
    """Conversations of one source; see load_conversations."""
    return load_conversations(name, spec, key).conversations


def load_conversations(name: str, spec: dict, key: str | None = None) -> SourceConversations:
    """Conversations of one source (config key `key`, default `data.sources.<name>`); malformed lines
    name file and line; records with no assistant turn are counted and warned about."""
    key = key or default_key(name)
    src = conversation_source(spec, key)
    out, no_answer, first_skipped = [], 0, None
    for where, lineno, record in _records(src, key):
        kind = src.format if src.format != "hf" else ("chat" if src.messages_key in record else "prompt_completion")
        reply_attributes = {}
        if kind == "chat":
            messages = record.get(src.messages_key)
            check_turns(where, src.messages_key, messages)
            reply_attributes = _reply_attributes(where, messages)
            if src.format == "hf":  # arrow rows carry every column of the schema, None where a message lacks it
                messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        else:
            if not isinstance(record.get(src.prompt_key), str) or not isinstance(record.get(src.completion_key), str):
                raise ChipadaptError(
                    f"{where}: needs string fields {src.prompt_key!r} and {src.completion_key!r}"
                    + (f" (or a {src.messages_key!r} list)" if src.format == "hf" else "")
                )
            # Configured splits, not losses: the rows eval=eda_script scores stay out of training.
            if src.exclude_eval_split and is_eval_row(record[src.completion_key], src.exclude_eval_split["fraction"]):
                continue
            if src.only_eval_split and not is_eval_row(record[src.completion_key], src.only_eval_split["fraction"]):
                continue
            for field in (src.prompt_key, src.completion_key):
                if not record[field].strip():
                    raise ChipadaptError(f"{where}: {field!r} is empty; a conversation needs a question and its answer")
            messages = [
                {"role": "user", "content": record[src.prompt_key]},
                {"role": "assistant", "content": record[src.completion_key]},
            ]
        if not any(m["role"] == "assistant" for m in messages):
            no_answer += 1  # nothing to learn from (or to rate)
            first_skipped = first_skipped or where
            continue
        turns = [m["role"] for m in messages if m["role"] != "system"]
        if turns[0] == "assistant":
            raise ChipadaptError(
                f"{where}: the conversation starts with an assistant turn, which answers nothing; "
                "put a greeting in the system message, or add the user turn it answers"
            )
        cid = str(record.get("id") or record.get("message_id") or f"{name}:{lineno}")
        conversation = Conversation(cid, messages, _attributes(where, record), where, _group(where, record, src, key))
        conversation.reply_attributes = reply_attributes
        out.append(conversation)
    if no_answer:
        log.warning(
            "%s: left out %d record%s with no assistant turn, nothing to learn (first: %s)",
            key,
            no_answer,
            "" if no_answer == 1 else "s",
            first_skipped,
        )
    if not out:
        raise ChipadaptError(f"{key}: {src.path} holds no conversations with an assistant turn")
    return SourceConversations(src, out, no_answer)


def refuse_reply_attributes(conversation: Conversation, key: str) -> None:
    """Refused where attributes are trained on: a template renders one attribute string per conversation."""
    if not conversation.reply_attributes:
        return
    number, labels = next(iter(conversation.reply_attributes.items()))
    raise ChipadaptError(
        f"{conversation.where}: turn {number} (assistant) carries its own 'attributes' {labels} (chat.py's /save when "
        f"/attributes changed between replies), which {key} cannot render: a template has one attribute string per "
        "conversation (data/template=model: in its system message); give the record one 'attributes' and drop the "
        "turns' own, or split the conversation where they change"
    )


# Why a source holds out groups: OASST exports one conversation per path through a message tree, so the
# threads of a tree share their first turns. Held out each by its own id, 128 of the attribute model's 136
# held-out threads had every turn but the rated reply trained on in a sibling (oasst1_val_en_threads), and
# 15 of SFT's 36 held-out answers were trained on verbatim (oasst_en100_threads): in-sample figures.
def _group(where: str, record: dict, src: ConversationSource, key: str) -> str:
    """The record's group (its `group_by` value), "" where the source sets none."""
    if src.group_by is None:
        return ""
    value = record.get(src.group_by)
    if value is None or value == "":
        raise ChipadaptError(
            f"{where}: no {src.group_by!r}, which {key}.group_by holds conversations out by "
            f"({key}.group_by=null holds each out by its own id; or add your file as its own source: "
            f"+data.sources.mine.path=FILE)"
        )
    return str(value)


def _records(src: ConversationSource, key: str):
    """(where, number, record): JSONL lines, or the rows of a Hugging Face dataset split."""
    if src.format == "hf":
        from chipadapt.io.hf_dataset import hf_records

        for index, record in hf_records(str(src.path), src.split, src.subset, bool(src.streaming), key):
            # numbered from 1, as JSONL lines and DAPT's dataset rows are; the id (index) keeps its split
            yield f"row {index + 1} of {src.path} [{src.split}]", index, record
        return
    path = Path(src.path)
    if path.is_dir() and not is_dataset_path(path):
        raise ChipadaptError(
            f"{key}.path: {path} is a folder; a {src.format} source is one JSONL file "
            f"(for a folder of JSONL or parquet files, or a save_to_disk dataset, set {key}.format=hf)"
        )
    for lineno, record in jsonl_records(path, missing=f"{key}.path: {path} does not exist"):
        yield f"{path}:{lineno}", lineno, record
