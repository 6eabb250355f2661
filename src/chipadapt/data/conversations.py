"""SFT sources: chat JSONL (`messages`) and prompt/completion JSONL (any two keys), as conversations;
or a Hugging Face dataset (`format: hf`, `split`, `subset`, `streaming`) whose rows are either
(a `messages_key` column, default `messages`, else `prompt_key`/`completion_key`).

Attributes (SteerLM) come from the record's `attributes` or `steerlm_attributes` (OASST export, 0-4),
or from HelpSteer's top-level columns (helpfulness, correctness, coherence, complexity, verbosity).
"""

from dataclasses import dataclass, field
from pathlib import Path

from chipadapt.data.eda_split import is_eval_row
from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import jsonl_records

HELPSTEER_KEYS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ROLES = {"user", "assistant", "system"}


@dataclass
class Conversation:
    id: str
    messages: list[dict]
    attributes: dict = field(default_factory=dict)


def _attributes(record: dict) -> dict:
    for key in ("attributes", "steerlm_attributes"):
        if isinstance(record.get(key), dict):
            return {k: v for k, v in record[key].items() if isinstance(v, (int, float))}
    return {k: record[k] for k in HELPSTEER_KEYS if isinstance(record.get(k), (int, float))}


def read_conversations(name: str, spec: dict) -> list[Conversation]:
    """Conversations of one source (`sft.sources.<name>`); malformed lines name file and line."""
    path = Path(spec["path"])
    fmt = spec.get("format", "chat")
    prompt_key, completion_key = spec.get("prompt_key", "prompt"), spec.get("completion_key", "completion")
    exclude = spec.get("exclude_eval_split")  # {fraction}: keep eda_script's evaluation rows out of training
    only = spec.get("only_eval_split")  # {fraction}: just those rows (a validation source)
    messages_key = spec.get("messages_key", "messages")
    out = []
    for where, lineno, record in _records(name, spec):
        kind = fmt if fmt != "hf" else ("chat" if messages_key in record else "prompt_completion")
        if kind == "chat":
            messages = record.get(messages_key)
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages
            ):
                raise ChipadaptError(
                    f"{where}: {messages_key!r} must be a list of {{role: system|user|assistant, content: str}}"
                )
            if fmt == "hf":  # arrow rows carry every column of the schema, None where a message lacks it
                messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        elif kind == "prompt_completion":
            if not isinstance(record.get(prompt_key), str) or not isinstance(record.get(completion_key), str):
                raise ChipadaptError(
                    f"{where}: needs string fields {prompt_key!r} and {completion_key!r}"
                    + (f" (or a {messages_key!r} list)" if fmt == "hf" else "")
                )
            if exclude and is_eval_row(record[completion_key], exclude["fraction"]):
                continue
            if only and not is_eval_row(record[completion_key], only["fraction"]):
                continue
            messages = [
                {"role": "user", "content": record[prompt_key]},
                {"role": "assistant", "content": record[completion_key]},
            ]
        else:
            raise ChipadaptError(f"sft.sources.{name}.format: {fmt!r} is not one of chat, prompt_completion, hf")
        if not any(m["role"] == "assistant" for m in messages):
            continue  # nothing to learn from
        cid = str(record.get("id") or record.get("message_id") or f"{name}:{lineno}")
        out.append(Conversation(cid, messages, _attributes(record)))
    if not out:
        raise ChipadaptError(f"sft.sources.{name}: {path} holds no conversations with an assistant turn")
    return out


def _records(name: str, spec: dict):
    """(where, number, record): JSONL lines, or the rows of a Hugging Face dataset split."""
    path = Path(spec["path"])
    if spec.get("format", "chat") == "hf":
        from chipadapt.io.hf_dataset import hf_records

        split = spec.get("split", "train")
        for index, record in hf_records(
            str(spec["path"]), split, spec.get("subset"), bool(spec.get("streaming", False)), f"sft.sources.{name}"
        ):
            yield f"{spec['path']} [{split}] row {index}", index, record
        return
    for lineno, record in jsonl_records(path, missing=f"sft.sources.{name}.path: {path} does not exist"):
        yield f"{path}:{lineno}", lineno, record
