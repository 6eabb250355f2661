"""What a documentation passage is about, read from its markdown structure rather than its prose.

Tool manuals state their facts in a few fixed shapes: a heading path, a Tcl synopsis block naming a
command, option tables (`| \\`-flag\\` | description |`), flow-variable tables
(`<a name="VAR"></a>VAR | description`) and log messages (`[ERROR GRT-0001] text`). A passage is a
slice of one document, so an option table cut off from its command still belongs to the command
shown earlier in the same document: structures are read over each document's passages in order.
"""

import re
from dataclasses import dataclass, field

from chipadapt.retrieval.passages import Passage

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)\s*(\w*)")
# A Tcl command in a synopsis or example: a snake_case word at the start of a code line.
COMMAND = re.compile(r"^\s*([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b")
# A synopsis block opens with the command alone or followed by its options: `tapcell`, `pdngen -verbose`.
SYNOPSIS = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?:\\?\s*$|\[?-)")
# Tcl built-ins and flow helpers that open code lines without being the documented command.
NOT_COMMANDS = {"read_lef", "read_def", "read_verilog", "read_liberty", "read_db", "link_design", "write_db"}
OPTION_CELL = re.compile(r"^`?\[?(--?[A-Za-z][\w-]*)")
VARIABLE_CELL = re.compile(r'^(?:<a name="([A-Z][A-Z0-9_]+)"></a>|`([A-Z][A-Z0-9_]{2,})`)')
MESSAGE = re.compile(r"\[(ERROR|WARNING|CRITICAL)\s+([A-Z]{2,4}-\d{3,4})\]\s*([^\n]+)")
PLAIN_ERROR = re.compile(r"^\s*(?:ERROR|Error|error):\s+([^\n]{12,})", re.M)
# Emphasis underscores only at word edges: `-root_buffer` keeps its own.
MARKDOWN = re.compile(r"`|\*{1,2}|(?<!\w)_{1,2}|_{1,2}(?!\w)|<[^>]+>|\[([^\]]*)\]\([^)]*\)")


@dataclass(frozen=True)
class TableEntry:
    name: str  # `-flag`, `--flag` or `FLOW_VARIABLE`
    description: str
    command: str | None  # the command a flag belongs to (None for flow variables and unknown owners)


@dataclass(frozen=True)
class Message:
    level: str  # ERROR, WARNING, CRITICAL (plain `ERROR:` lines: ERROR)
    code: str | None  # GRT-0001
    text: str


@dataclass
class PassageStructure:
    headings: list[str] = field(default_factory=list)  # section path at the passage's first line, outermost first
    commands: list[str] = field(default_factory=list)  # commands shown in the passage, else the section's last one
    options: list[TableEntry] = field(default_factory=list)
    variables: list[TableEntry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


def plain(text: str) -> str:
    """Markdown cell text as a reader sees it: no backticks, emphasis, tags or link targets."""
    return re.sub(r"\s+", " ", MARKDOWN.sub(lambda m: m.group(1) or "", text)).strip()


def _doc_order(passage: Passage) -> tuple[str, int]:
    head, _, n = passage.id.rpartition("#")
    return (passage.source or head, int(n) if n.isdigit() else 0)


def _table_cells(line: str) -> list[str] | None:
    if not line.lstrip().startswith("|") and not line.startswith("<a name="):
        return None
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 2 or all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
        return None
    return cells


class _DocumentReader:
    """Walks one document's passages in order, carrying the heading path and the current command."""

    def __init__(self):
        self.path: list[tuple[int, str]] = []  # (level, title)
        self.command: str | None = None
        self.command_level = 0  # heading level of the section that showed the command
        self.fence: str | None = None  # language of the open code block, "" for none

    def read(self, text: str) -> PassageStructure:
        found = PassageStructure(headings=[t for _, t in self.path])
        shown: list[str] = []
        content_seen = False
        block_start = False  # the next line is a code block's first
        for line in text.splitlines():
            fence = FENCE.match(line)
            if fence:
                content_seen = True
                self.fence = None if self.fence is not None else fence.group(2).lower()
                block_start = self.fence is not None
                continue
            if self.fence is not None:
                command = COMMAND.match(line) or (SYNOPSIS.match(line) if block_start else None)
                block_start = False
                if self.fence in ("", "tcl") and command and command.group(1) not in NOT_COMMANDS:
                    if command.group(1) not in shown:
                        shown.append(command.group(1))
                    self.command, self.command_level = command.group(1), self.path[-1][0] if self.path else 0
                found.messages += self._messages(line)
                continue
            heading = HEADING.match(line)
            if heading:
                level, title = len(heading.group(1)), plain(heading.group(2))
                self.path = [(lv, t) for lv, t in self.path if lv < level] + [(level, title)]
                if level <= self.command_level:  # a sibling section documents another command
                    self.command, self.command_level = None, 0
                if not content_seen:  # a passage opening with headings is about that section
                    found.headings = [t for _, t in self.path]
                continue
            if line.strip():
                content_seen = True
            cells = _table_cells(line)
            if cells:
                self._table_row(cells, found)
            found.messages += self._messages(line)
        found.commands = shown or ([self.command] if self.command else [])
        return found

    def _table_row(self, cells: list[str], found: PassageStructure) -> None:
        description = plain(" ".join(cells[1:]))
        if not description or description.lower() in ("description", "value", "effect", "default"):
            return
        option = OPTION_CELL.match(cells[0])
        if option:
            found.options.append(TableEntry(option.group(1), description, self.command))
            return
        variable = VARIABLE_CELL.match(cells[0])
        if variable:
            found.variables.append(TableEntry(variable.group(1) or variable.group(2), description, None))

    @staticmethod
    def _messages(line: str) -> list[Message]:
        out = [Message(level, code, plain(text)) for level, code, text in MESSAGE.findall(line)]
        if not out:
            out = [Message("ERROR", None, plain(text)) for text in PLAIN_ERROR.findall(line)]
        return out


def document_structures(passages: list[Passage]) -> dict[str, PassageStructure]:
    """passage id -> its structure, each document read from its first passage on."""
    out: dict[str, PassageStructure] = {}
    readers: dict[str, _DocumentReader] = {}
    for passage in sorted(passages, key=_doc_order):
        reader = readers.setdefault(_doc_order(passage)[0], _DocumentReader())
        out[passage.id] = reader.read(passage.text)
    return out
