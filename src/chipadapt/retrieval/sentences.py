"""The sentences of a markdown passage, read across the line breaks of hard-wrapped prose.

Documentation is often wrapped at 80-100 columns, so a single line break inside a paragraph is a
space, not a sentence end: splitting on every newline turns "... could not fit all nets into the"
into a sentence. Blank lines, headings, table rows, list items, quotes and code (each line of a
fenced block) still end one.
"""

import re
from dataclasses import dataclass

# A list item or quote starts a unit of its own, which its wrapped lines continue.
BLOCK_START = re.compile(r"\s*(?:[-*+]\s|\d+[.)]\s|>)")
# A heading, table row or code fence is a unit of one line (its cells may still hold sentences).
BLOCK_WHOLE = re.compile(r"\s*(?:#|\||```|~~~)")
FENCE = re.compile(r"\s*(?:```|~~~)")
FENCE_WITH_LANGUAGE = re.compile(r"\s*(?:```|~~~)\s*\w")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Sentence:
    text: str  # line breaks and runs of spaces as one space
    start: int  # its span in the passage text
    end: int


def _starts_in_code(lines: list[str]) -> bool:
    """Whether `lines` begin inside a code block opened before them (a passage cut inside a long one):
    an odd number of fences, the first of them bare and right under a code line. In chunked
    passages an opening fence always starts a block of its own, after a blank line."""
    fences = [i for i, line in enumerate(lines) if FENCE.match(line)]
    if len(fences) % 2 == 0 or FENCE_WITH_LANGUAGE.match(lines[fences[0]]):
        return False
    return fences[0] > 0 and bool(lines[fences[0] - 1].strip())


def _units(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_code) of each paragraph, list item, heading, table row and code line, in order."""
    units: list[tuple[int, int, bool]] = []
    open_prose = False  # the last unit is prose that the next plain line continues
    lines = text.splitlines(keepends=True)
    in_fence, offset = _starts_in_code(lines), 0
    for line in lines:
        start, end = offset, offset + len(line.rstrip("\r\n"))
        offset += len(line)
        if not line.strip():
            open_prose = False
            continue
        fence = bool(FENCE.match(line))
        if in_fence or fence or BLOCK_WHOLE.match(line):
            units.append((start, end, in_fence or fence))
            open_prose, in_fence = False, in_fence ^ fence
        elif open_prose and not BLOCK_START.match(line):  # a wrapped line of the paragraph (or item) above
            units[-1] = (units[-1][0], end, False)
        else:
            units.append((start, end, False))
            open_prose = True
    return units


def sentences(text: str) -> list[Sentence]:
    """Every sentence of `text`: each unit splits at `.`, `!` or `?` followed by a space, except a
    code line, which is one "sentence" as it stands (`a.b c` in code ends nothing)."""
    out = []
    for start, end, is_code in _units(text):
        unit, cursor = text[start:end], 0
        cuts = [] if is_code else [*SENTENCE_END.finditer(unit)]
        for cut in [*cuts, None]:
            stop = cut.start() if cut else len(unit)
            piece = unit[cursor:stop]
            if piece.strip():
                lead, trail = len(piece) - len(piece.lstrip()), len(piece) - len(piece.rstrip())
                out.append(Sentence(" ".join(piece.split()), start + cursor + lead, start + stop - trail))
            cursor = cut.end() if cut else len(unit)
    return out
