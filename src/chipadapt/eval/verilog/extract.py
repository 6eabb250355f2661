"""Pull the design (`TopModule` in VerilogEval) and the helper modules it needs out of a model's reply.

Chat mode: the code block that defines the design is kept whole (every module in it, `timescale` and
`define` lines too: VerilogEval's harness compiles the whole completion), and modules that only other
blocks define are added. Completion mode: the reply continues the design's header, so the header is
put back in front, the design ends at its first `endmodule`, and of what follows only the modules the
design instantiates (directly or through each other) are kept; the rest is a base model running on.
In both, a module named like one the harness defines itself (`reserved`: the testbench, the reference,
the task's extra sources) is dropped: a second definition would be a compile error.
"""

import re

from chipadapt.eval.verilog.hdl_scan import COMMENTS_AND_STRINGS, instantiated_modules

FENCED = re.compile(r"```(?:verilog|systemverilog|sv|v)?\s*\n(.*?)(?:```|$)", re.S | re.I)
# A definition needs a header's shape ("module and2 (", "module m #(", "module top;"): prose ("a module
# that implements ...", "// This module tb-free") is not one.
ANY_MODULE = re.compile(r"\bmodule\s+([A-Za-z_]\w*)\s*(?:#|\(|;).*?\bendmodule\b", re.S)


def _code_only(text: str) -> str:
    """`text` with comments and string literals blanked (same length, newlines kept): positions still
    point into `text`, and neither a comment nor a printed string starts or ends a module."""
    return COMMENTS_AND_STRINGS.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def modules(text: str) -> list[tuple[str, str]]:
    """(name, text) of each complete module definition in `text`, in order."""
    return [(m.group(1), text[m.start() : m.end()]) for m in ANY_MODULE.finditer(_code_only(text))]


def _defines(text: str, name: str) -> bool:
    return any(n == name for n, _ in modules(text))


def _without(text: str, names: set[str]) -> str:
    spans = [m.span() for m in ANY_MODULE.finditer(_code_only(text)) if m.group(1) in names]
    for start, end in reversed(spans):
        text = text[:start] + text[end:]
    return text


def needed_helpers(design: str, helpers: list[tuple[str, str]]) -> list[str]:
    """The helpers' texts that `design` instantiates, directly or through other helpers, in reply order."""
    defined = dict(reversed(helpers))  # the first definition of a name wins
    needed, todo = set(), instantiated_modules(design)
    while todo:
        name = todo.pop()
        if name in defined and name not in needed:
            needed.add(name)
            todo.extend(instantiated_modules(defined[name]))
    kept, seen = [], set()
    for name, text in helpers:
        if name in needed and name not in seen:
            kept.append(text)
            seen.add(name)
    return kept


def extract_module(
    reply: str, prompt_header: str | None = None, name: str = "TopModule", reserved: frozenset[str] = frozenset()
) -> str:
    """The design module `name` and its helpers (see the module docstring). In completion mode the
    reply continues `prompt_header` (the module's port list)."""
    if prompt_header is not None:
        body, _, rest = reply.split("```")[0].partition("endmodule")
        design = f"{prompt_header.rstrip()}\n{body}\nendmodule\n"
        helpers = [(n, t) for n, t in modules(rest) if n != name and n not in reserved]
        return "\n".join([design, *needed_helpers(design, helpers)]).rstrip() + "\n"
    blocks = FENCED.findall(reply)
    # Without a code block the reply's prose is not code: only its module definitions are kept.
    chosen = next((b for b in blocks if _defines(b, name)), None) if blocks else None
    if chosen is None and not _defines(reply, name):
        return blocks[0] if blocks else reply  # no complete module (cut off by max_new_tokens): the code, not the prose
    kept = [_without(chosen, set(reserved)).strip()] if chosen is not None else []
    own = {n for n, _ in modules(chosen)} if chosen is not None else set()
    for other in [b for b in blocks if b is not chosen] if blocks and chosen is not None else [reply]:
        for n, text in modules(other):
            if n not in own and n not in reserved:  # the first definition of a name wins
                kept.append(text)
                own.add(n)
    return "\n".join(kept) + "\n"
