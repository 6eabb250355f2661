"""An interactive engineering assistant in the terminal: streamed replies, optional RAG and SteerLM
attributes. It behaves like the chat CLIs people know: line editing and history (readline), Ctrl-C
stops the reply being written and returns to the prompt, Ctrl-D leaves (exit 0), /help lists the
commands, an unknown /command is an error and never reaches the model, /save writes the transcript,
and the run folder's chat.log records the session."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from chipadapt.chat_attributes import parse_attributes, unfamiliar_attributes
from chipadapt.chat_checks import check_chat_config
from chipadapt.errors import ChipadaptError
from chipadapt.quiet import silence_known_noise

if TYPE_CHECKING:
    from chipadapt.chat_commands import command, save_transcript
    from chipadapt.chat_session import ChatSession

# The session's parts live in chat_session.py, chat_attributes.py and chat_commands.py; the names
# tests and earlier code import from chipadapt.chat stay importable from here. The session and its
# commands import torch and transformers (seconds): they are imported once the checks of run() pass,
# or when a name of theirs is first asked for here (__getattr__), so a refused chat.py says so at once.
__all__ = [
    "ChatSession",
    "command",
    "converse",
    "parse_attributes",
    "read_lines",
    "run",
    "save_transcript",
    "unfamiliar_attributes",
]

HISTORY_LENGTH = 1000


def __getattr__(name: str):
    if name == "ChatSession":
        from chipadapt.chat_session import ChatSession

        return ChatSession
    if name in ("command", "save_transcript", "CommandError"):
        from chipadapt import chat_commands

        return getattr(chat_commands, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def transcript_logger() -> logging.Logger:
    """A logger that writes only to the run's log file: the terminal already shows the conversation."""
    session = logging.getLogger("chipadapt.chat.session")
    session.propagate = False
    session.setLevel(logging.INFO)
    if not session.handlers:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                session.addHandler(handler)
    return session


def read_lines(prompt: str, history_file: Path):
    """The user's lines: from an editable prompt with history when stdin is a terminal, else stdin.
    Ctrl-C at the prompt starts a fresh line; Ctrl-D ends the session. Bytes that are no text in stdin's
    encoding (Latin-1 pasted into a UTF-8 terminal) are read as U+FFFD: decoded strictly they ended the
    session, and as lone surrogates (Python's choice under a C or C.UTF-8 locale) the tokenizer refused
    them and the transcript could not be written as UTF-8. input() decodes with stdin's errors too."""
    if hasattr(sys.stdin, "reconfigure"):  # a TextIOWrapper: the console's stdin, or a pipe
        sys.stdin.reconfigure(errors="replace")
    if not sys.stdin.isatty():
        yield from sys.stdin
        return
    import readline  # importing it gives input() line editing and arrow-key history

    readline.set_history_length(HISTORY_LENGTH)
    if history_file.is_file():
        readline.read_history_file(history_file)
    try:
        while True:
            try:
                yield input(prompt)
            except KeyboardInterrupt:
                print("^C (Ctrl-D or /quit to leave)", flush=True)
            except EOFError:
                print(flush=True)
                return
    finally:
        history_file.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(history_file)


def run(cfg: DictConfig) -> None:
    from chipadapt.job import recorded_job
    from chipadapt.models.locate import locate_model, names_nothing

    silence_known_noise()
    if not isinstance(cfg.get("template"), DictConfig):  # `template=chipnemo` replaces the group's config by a word
        raise ChipadaptError(
            f"template: {cfg.get('template')!r} is not a chat template's config; "
            "choose one with data/template@template=chipnemo (or =model)"
        )
    check_chat_config(cfg)
    path = cfg.model.get("path")
    if path and names_nothing(path):  # refused as loading the session's model would, before its imports
        locate_model(path, "model.path")
    from chipadapt.chat_session import ChatSession

    run_dir = Path(cfg.paths.output_dir)
    with recorded_job(cfg, "chat", run_dir) as manifest:
        session = ChatSession(cfg)
        manifest.add_input("model", session.folder)
        # Once the model is loaded, Ctrl-C stops the reply being written, not the session (entry
        # points otherwise end the run on SIGINT); SIGTERM still ends it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        converse(session, cfg, run_dir)
        manifest.update("metrics", {"messages": len(session.messages)})


def converse(session: ChatSession, cfg: DictConfig, run_dir: Path) -> None:
    import torch

    from chipadapt.chat_commands import CommandError, command

    record = transcript_logger()
    rag = " with retrieval" if session.retriever else ""
    name = cfg.model.path or cfg.model.name
    print(f"chipadapt chat: {name}{rag}. /help lists the commands; Ctrl-C stops a reply, Ctrl-D leaves.", flush=True)
    record.info("session start: model %s%s", name, rag)
    for line in read_lines("you> ", Path(cfg.paths.cache_dir) / "chat_history"):
        line = line.strip()
        if not line:
            continue
        record.info("user: %s", line)
        try:
            if line.startswith("/"):
                if not command(session, line, run_dir):
                    break
                continue
            print("assistant> ", end="", flush=True)
            answer = session.reply(line)
            if session.retriever is not None:
                record.info("%s", session.sources_record())
            record.info("assistant: %s", answer if answer is not None else "(stopped by Ctrl-C)")
        except (CommandError, ChipadaptError) as err:
            print(f"chipadapt: error: {err}", file=sys.stderr, flush=True)
            record.info("error: %s", err)
        except torch.OutOfMemoryError:  # the session and its history stay; a shorter turn may fit
            torch.cuda.empty_cache()
            message = "out of GPU memory writing the reply; /reset clears the history, or lower generate.max_new_tokens"
            print(f"chipadapt: error: {message}", file=sys.stderr, flush=True)
            record.info("error: %s", message)
        except KeyboardInterrupt:  # Ctrl-C outside the streamed reply (retrieval, a command), or a second one in it
            print("\n(stopped)", flush=True)
            record.info("stopped by Ctrl-C")
    record.info("session end: %d messages", len(session.messages))
