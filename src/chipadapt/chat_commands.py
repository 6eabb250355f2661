"""chat.py's /commands: /help, /reset, /attributes, /sources and /save, which writes the
transcript in the chat data format. A command's error is a CommandError: one line, and the session
goes on."""

import json
from pathlib import Path

from chipadapt.chat_attributes import parse_attributes, unfamiliar_attributes
from chipadapt.chat_checks import check_attribute_record
from chipadapt.chat_session import ChatSession
from chipadapt.data.chat_templates import attribute_string
from chipadapt.io.atomic import write_text_atomic

COMMANDS = {
    "/help": "this list",
    "/reset": "forget the conversation so far",
    "/attributes k:v,...": "SteerLM attributes for the next replies (e.g. quality:4,humor:0; empty: none)",
    "/sources": "the passages behind the last answer (with retrieval=...)",
    "/save [FILE]": "write the transcript as chat JSONL (default: transcript.jsonl in the run folder)",
    "/quit": "leave (also /exit, or Ctrl-D)",
}


class CommandError(Exception):
    pass


def transcript_path(argument: str, run_dir: Path) -> Path:
    return Path(argument).expanduser() if argument else run_dir / "transcript.jsonl"


def why_not_written(dest: Path, err: OSError) -> str:
    """The reason, naming a file that stands where a folder of `dest` would be (mkdir says "File exists")."""
    existing = next((folder for folder in dest.parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    return err.strerror or type(err).__name__


def save_transcript(session: ChatSession, argument: str, run_dir: Path) -> tuple[Path, str]:
    """The conversation in the chat data format (one JSONL line), so it can feed SFT directly; and a
    note when its replies were generated under different attributes.

    The record's `attributes` are those the replies were generated under, not the ones set last. When
    `/attributes` changed them between replies, no one set describes the conversation: each assistant
    message then carries its own `attributes` and the record none."""
    dest = transcript_path(argument, run_dir)
    if argument and dest.exists():  # the run folder's transcript is ours to rewrite; the user's files are not
        raise CommandError(f"/save: {dest} exists; give a new file name")
    record: dict = {"messages": session.messages}
    distinct = {json.dumps(a, sort_keys=True) for a in session.reply_attributes}
    note = ""
    if len(distinct) == 1 and session.reply_attributes[0]:
        record["attributes"] = session.reply_attributes[0]
    elif len(distinct) > 1:
        replies = iter(session.reply_attributes)
        record["messages"] = [
            {**m, "attributes": next(replies)} if m["role"] == "assistant" else m for m in session.messages
        ]
        note = "; the replies were generated under different attributes, so each assistant message carries its own"
    write_text_atomic(dest, json.dumps(record, ensure_ascii=False) + "\n")
    return dest, note


def command(session: ChatSession, line: str, run_dir: Path) -> bool:
    """Run one /command; False when the session should end."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/help":
        width = max(map(len, COMMANDS))
        print("\n".join(f"  {cmd.ljust(width)}  {what}" for cmd, what in COMMANDS.items()))
    elif name == "/reset":
        session.reset()
        print("(history cleared)")
    elif name == "/attributes":
        attributes = parse_attributes(argument)
        if attributes:  # as generate.attributes is refused for a model that never learned attributes
            check_attribute_record(session.folder, "/attributes")
        session.attributes = attributes
        print(f"(attributes: {attribute_string(session.attributes, session.order) or 'none'})")
        if note := unfamiliar_attributes(session.attributes, session.order):
            print(f"(note: {note}; a SteerLM model has never seen it)")
    elif name == "/sources":
        print("\n".join(session.source_lines()) or "(no retrieval for the last answer)")
    elif name == "/save":
        try:
            saved = save_transcript(session, argument, run_dir)
        except OSError as err:  # a read-only folder, a path under a file, a full disk: the session goes on
            dest = transcript_path(argument, run_dir)
            raise CommandError(
                f"/save: cannot write {dest} ({why_not_written(dest, err)}); give another file name"
            ) from None
        print("(transcript of {} messages written to {}{})".format(len(session.messages), *saved))
    else:
        raise CommandError(f"unknown command {name} (/help lists the commands); nothing was sent to the model")
    return True
