"""Template query styles: how engineers search tool documentation when they do not write a full question.

- keyword: a search-box query, the section's command or heading plus the passage's rarest words;
- flag: a lookup in an option or flow-variable table ("clock_tree_synthesis -root_buffer", "which
  option of X sets ...", "what does PLACE_DENSITY do?");
- error: a log message pasted or asked about ("what does GPL-0305 mean?");
- howto: "How do I ..." from a section heading that names a task (the LLM writes these first; the
  template is the fallback).
They need no model, so they cost nothing on a CPU; the natural-question style is the LLM's.
"""

import math
import random
import re
from collections import Counter

from chipadapt.retrieval.passage_structure import Message, PassageStructure, TableEntry

WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{2,}")
STOPWORDS = set(
    "the and for are but not you all any can had her was one our out has him his how its may new now old see two "
    "way who did get let put say she too use this that with from have they will your what when which their there "
    "been than them then these those into more also such only other some each used uses using must should would "
    "could about after before under over between while where both same very just like does here file files set "
    "value values default option options command commands example following".split()
)
# Heading words that name a task; "Set Global Routing Layer Adjustment" -> "How do I set global routing ...?"
TASK_VERBS = (
    "add build check configure create debug define delete enable disable estimate extract find fix generate "
    "insert install load place read remove repair report run save set specify tune use write"
).split()


def document_frequencies(texts: list[str]) -> tuple[Counter, int]:
    df = Counter()
    for text in texts:
        df.update({w.lower() for w in WORD.findall(text)})
    return df, len(texts)


def keyword_query(text: str, structure: PassageStructure, df: Counter, n_docs: int, rng: random.Random) -> str | None:
    """The section's command (or last heading) and 2-4 of the passage's rarest words, lower case."""
    counts = Counter(w.lower() for w in WORD.findall(text))
    ranked = sorted(
        (w for w in counts if w not in STOPWORDS and not w.startswith("-")),
        key=lambda w: -counts[w] * math.log(n_docs / (1 + df[w])),
    )
    anchor = rng.choice(structure.commands) if structure.commands else None
    if anchor is None and structure.headings:
        anchor = structure.headings[-1].lower()
    words = [w for w in ranked[:8] if not anchor or w not in anchor]
    if len(words) < 2:
        return None
    picked = rng.sample(words[:6], min(len(words[:6]), rng.randint(2, 4)))
    return " ".join(([anchor] if anchor else []) + picked)


def _clause(description: str) -> str:
    """A description's first sentence, shaped to follow 'which option ...'."""
    first = re.split(r"(?<=[.!?])\s", description, maxsplit=1)[0].rstrip(".")
    words = first.split()
    if not words:
        return ""
    head = words[0].lower()
    rest = " ".join(words[1:])
    if head in ("the", "a", "an"):
        return f"sets {head} {rest}"
    if head.endswith("s") and not head.endswith("ss"):  # Enables, Specifies, Sets
        return f"{head} {rest}"
    if head in ("enable", "disable", "specify", "set", "use", "write", "report", "allow", "turn"):
        return f"{head}s {rest}" if not head.endswith("y") else f"{head[:-1]}ies {rest}"
    return f"controls {first[0].lower()}{first[1:]}"


def flag_query(entry: TableEntry, rng: random.Random) -> str:
    clause = _clause(entry.description)
    if entry.name.startswith("-"):
        owner = entry.command
        forms = [
            f"{owner} {entry.name}" if owner else f"{entry.name} option",
            f"what does {entry.name} do" + (f" in {owner}?" if owner else "?"),
            f"which {owner + ' ' if owner else ''}option {clause}?",
        ]
    else:
        forms = [
            entry.name,
            f"what does {entry.name} control?",
            f"which flow variable {clause}?",
        ]
    return rng.choice(forms)


def error_query(message: Message, rng: random.Random) -> str:
    words = message.text.split()
    quoted = " ".join(words[: min(len(words), rng.randint(6, 12))])
    forms = [f"{message.level} {message.code} {quoted}" if message.code else f"{message.level}: {quoted}"]
    forms.append(f"how do I fix '{quoted}'?")
    if message.code:
        forms.append(f"what does {message.code} mean?")
    return rng.choice(forms)


def _task_verb(word: str) -> str | None:
    """The task verb a heading opens with: 'Set' -> set, 'Running' -> run, 'Placing' -> place."""
    word = word.lower()
    if word in TASK_VERBS:
        return word
    if word.endswith("ing"):
        stem = word[:-3]
        for verb in (stem, stem + "e", stem[:-1]):  # checking, placing, running
            if verb in TASK_VERBS:
                return verb
    return None


def howto_from_heading(structure: PassageStructure) -> str | None:
    """'How do I ...?' from the innermost heading that starts with a task verb (or its -ing form)."""
    for heading in reversed(structure.headings):
        words = heading.split()
        verb = _task_verb(words[0]) if words else None
        if verb:
            return f"How do I {' '.join([verb, *words[1:]]).lower()}?"
    return None
