"""A Kubernetes Secret's `data:` and `stringData:`: every value replaced (and counted) alone, the keys kept,
written as YAML's indented map or as a flow map (`data: {password: UzNjcmV0}`, JSON's `"data": {...}`, JSON
escaped in a JSON string). Every value: a certificate too (`tls.crt` may hold its private key after it, and
decoding each value whole to tell is no scan to run on a megabyte-long one). `data:` only in the mapping whose
`kind` is Secret: in a `kind: List` beside a ConfigMap, the ConfigMap's `data:` is config. A YAML anchor on a
value (`password: &pw UzNjcmV0`) stays, and an alias to an anchor its document defines (`copy: *pw`) is a
reference, not a value. Every scan is linear in the text."""

import bisect
import re
from collections.abc import Callable

from chipadapt.curation.redaction_forms import K8S_SECRET_FLOW, K8S_SECRET_KIND, K8S_SECRET_KIND_FLOW
from chipadapt.curation.redaction_value import anchor_names, is_reference

Mark = Callable[[str, str], str]  # (placeholder, what it replaces) -> the text written instead

# One entry of a Secret's map: its key (plain or quoted), `:`, and its value to the line's end. A plain key
# runs (greedy) to the first `:`, spaces before it included: a lazy key followed by `[ \t]*:` scanned the
# spaces after each of its characters again, seconds on a line of 40,000 spaces.
_MAP_ENTRY = re.compile(
    r"(?P<key>(?:\"[^\"\n]*\"[ \t]*|'[^'\n]*'[ \t]*|[^\s:#\"'][^:\n]*):)(?P<sp>[ \t]*)(?P<v>[^\r\n]*)"
)
# A quoted value, `\"` the quote in escaped JSON (`\\\"` in JSON escaped twice), to 31 backslashes (escaped 5
# times): the closing quote is looked for at each character from the end, and an unbounded run (`\\\\...\"`)
# was compared there as far as it reached, quadratic time.
_MAP_QUOTED = re.compile(r"(\\{0,31}[\"'])(.*)\1([ \t]*(?:#.*)?)", re.S)
# `&pw ` before a value: the anchor is YAML's structure (an alias elsewhere names it), not the value.
_ANCHOR = re.compile(r"&[^\s,\[\]{}]+(?:[ \t]+|$)")
_ALIAS = re.compile(r"\*[^\s,\[\]{}]+")
# A flow map's parts: a quoted string whole (a `,` or `:` in it is its own), a Helm template, a run of anything
# else, or one character that ends an entry. Each token is found once, a string to its close or, left open,
# the end (a string that failed to close was searched again from each quote after it: quadratic time).
_FLOW_TOKEN = re.compile(r"\"(?:[^\"\\]|\\.)*\"?|'[^']*'|\{\{[^{}]*\}\}|[^,:\"'{]+|.", re.S)
# ... and in JSON escaped in a string (escaped again, at any depth): a quote with its run of backslashes, an
# entry's `,` or `:`, a run of anything else. _escaped_tokens joins a string's units into one token.
_ESCAPED_UNIT = re.compile(r'(\\*)"|[,:]|[^,:"\\]+|\\+', re.S)
# A YAML line: its indentation and, on a list's item, the `- ` that opens a mapping at the key's column.
_YAML_LINE = re.compile(r"(?P<ind>[ \t]*)(?P<dash>(?:-[ \t]+)*)(?P<rest>[^\r\n]*)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


Anchors = Callable[[], frozenset[str]]  # the anchors the entries' document defines, read when asked for


def _map_value(value: str, mark: Mark, anchors: Anchors) -> str | None:
    """One entry's value on its key's line, replaced, or None where it is kept: empty, a reference (a Helm
    template's `{{ .Values.password | b64enc }}`), an alias, a block scalar's indicator (its lines follow)."""
    anchor = _ANCHOR.match(value)
    prefix = anchor.group(0) if anchor else ""
    value = value[len(prefix) :]
    quoted = _MAP_QUOTED.fullmatch(value)
    if quoted:
        inner = quoted.group(2)
        if not inner or is_reference(inner.strip()):
            return None
        return f"{prefix}{quoted.group(1)}{mark('secret', inner)}{quoted.group(1)}{quoted.group(3)}"
    core = re.split(r"[ \t]#", value, maxsplit=1)[0].rstrip()
    if not core or core[0] in "|>#" or is_reference(core) or (_ALIAS.fullmatch(core) and core[1:] in anchors()):
        return None
    return prefix + mark("secret", core) + value[len(core) :]


def _secret_map(entries: str, mark: Mark, anchors: Anchors) -> tuple[str, int]:
    """A Secret's map with each entry's value replaced: a value on its key's line alone, a block (`tls.key:
    |`, or a value on the lines below an empty one) as one placeholder at its first line's indentation."""
    lines = entries.splitlines(keepends=True)
    column = next((_indent(line) for line in lines if line.strip()), 0)
    out: list[str] = []
    block: list[str] = []  # the lines under the entry last read, more indented than its key
    replaced = 0

    def close_block() -> None:
        nonlocal replaced
        if not block:
            return
        text = "".join(block)
        body = text.rstrip("\r\n")
        ending = text[len(body) :]
        stripped = body.strip()
        if stripped and not is_reference(" ".join(stripped.split())):
            start = _indent(body)
            out.append(body[:start] + mark("secret", body[start:]) + ending)
            replaced += 1
        else:
            out.append(text)
        block.clear()

    for line in lines:
        depth = _indent(line)
        if line.strip() and depth > column:
            block.append(line)
            continue
        if not line.strip() and block:
            block.append(line)  # a blank line inside a block; one at its end stays outside it (below)
            continue
        close_block()
        entry = _MAP_ENTRY.fullmatch(line.rstrip("\r\n")[depth:]) if depth == column else None
        new = _map_value(entry.group("v"), mark, anchors) if entry else None
        if new is None:
            out.append(line)
        else:
            ending = line[len(line.rstrip("\r\n")) :]
            out.append(line[:depth] + entry.group("key") + entry.group("sp") + new + ending)
            replaced += 1
    # Blank lines that ended the last block are not part of its value.
    trailing = []
    while block and not block[-1].strip():
        trailing.insert(0, block.pop())
    close_block()
    return "".join(out + trailing), replaced


def _quote_depth(slashes: int) -> int:
    """How many times JSON escaped in a string must be unescaped for a quote after `slashes` backslashes to be
    one: 0 after none (or 2, an escaped backslash), 1 after 1, 2 after 3, 3 after 7. Each escaping doubles the
    backslashes before a quote and adds one."""
    depth = 0
    while slashes % 2:
        slashes, depth = slashes // 2, depth + 1
    return depth


def _escaped_tokens(entries: str, depth: int) -> list[str]:
    """The parts of a flow map's inside written in JSON escaped `depth` times: a string whole, from its quote
    (after 1 backslash at depth 1, 3 at depth 2) to the next quote that closes it (one as deep, or one
    shallower, which ends it with the string around it) or, left open, the end; a `,` or `:`; any other run.
    One scan."""
    tokens: list[str] = []
    start = None  # where the open string began
    for m in _ESCAPED_UNIT.finditer(entries):
        unit = m.group()
        if start is not None:
            if unit[-1] == '"' and _quote_depth(len(m.group(1))) <= depth:
                tokens.append(entries[start : m.end()])
                start = None
        elif unit[-1] == '"' and _quote_depth(len(m.group(1))) == depth:
            start = m.start()
        else:
            tokens.append(unit)
    if start is not None:
        tokens.append(entries[start:])
    return tokens


def _flow_map(entries: str, mark: Mark, anchors: Anchors, depth: int = 0) -> tuple[str, int]:
    """A flow map's inside (`password: UzNj, "tls.key": "LS0t..."`) with each entry's value replaced.
    `depth`: the map is JSON escaped in a string that many times (`\"password\":\"UzNj\"` is 1)."""
    parts: list[list[str]] = [[]]
    for token in _escaped_tokens(entries, depth) if depth else _FLOW_TOKEN.findall(entries):
        if token == ",":
            parts.append([])
        else:
            parts[-1].append(token)
    out, replaced = [], 0
    for tokens in parts:
        part = "".join(tokens)
        colon = next((i for i, t in enumerate(tokens) if t == ":"), None)
        if colon is None:
            out.append(part)
            continue
        key, value = "".join(tokens[: colon + 1]), "".join(tokens[colon + 1 :])
        core = value.strip()
        new = _map_value(core, mark, anchors) if core else None
        if new is None:
            out.append(part)
            continue
        start = len(value) - len(value.lstrip())
        out.append(key + value[:start] + new + value[start + len(core) :])
        replaced += 1
    return ",".join(out), replaced


def _yaml_mappings(text: str) -> tuple[list[int], list[int]]:
    """Each content line's start and the YAML mapping it is a key of (a number): a line at a mapping's
    column continues it, a deeper one opens one, a shallower one closes the deeper ones, a list item's
    `- ` opens one at its key's column, and `---` starts a document."""
    starts: list[int] = []
    ids: list[int] = []
    stack: list[tuple[int, int]] = []  # (column, mapping) from the outermost
    count = 0
    for line in _YAML_LINE.finditer(text):
        rest = line.group("rest")
        if not rest.strip() and not line.group("dash") or rest.startswith("#"):
            continue
        if line.group("ind") == "" and line.group(0).startswith("---"):
            stack.clear()
            continue
        column = line.end("dash") - line.start()
        while stack and (stack[-1][0] > column or (line.group("dash") and stack[-1][0] == column)):
            stack.pop()
        if not stack or stack[-1][0] < column:
            count += 1
            stack.append((column, count))
        starts.append(line.start())
        ids.append(stack[-1][1])
    return starts, ids


# What tells JSON's objects and strings apart: a quote with the run of backslashes before it (their number says
# whether it opens or closes a string, or a string of JSON escaped in one), a brace, a line's end. A run of
# backslashes is read from its start only: linear time.
_JSON_TOKEN = re.compile(r"(?<!\\)(\\*)\"|[{}\n]")


def _json_objects(text: str) -> tuple[list[int], list[int], list[int]]:
    """Where each brace object's inside begins and ends, as boundaries, and from each on the innermost object
    (a number, 0: none) and the depth in strings (0: none, 1: a string, 2: a string of the JSON escaped in
    it, 3: a string of JSON escaped in that one, ...). A string's braces are objects inside it only (JSON
    escaped in it: kubectl's last-applied-configuration), closed with it; a string ends at its quote, at a
    shallower one (the string around it ends) or at its line's end."""
    bounds, ids, levels = [0], [0], [0]
    stack: list[int] = []
    count, level = 0, 0
    bases: list[int] = []  # how deep the stack was where each open string began, the outermost first
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        depth = _quote_depth(len(m.group(1) or ""))
        if token == "\n" and not level:
            continue
        if token == "\n" or (token[-1] == '"' and level and depth < level):
            level = 0 if token == "\n" else depth  # what the closed strings' braces opened ends with them
            del stack[bases[level] :], bases[level:]
        elif token[-1] == '"' and (not level or depth == level):
            level += 1  # a string opens: in the text, or in the JSON escaped in the string around it
            bases.append(len(stack))
        elif token[-1] == '"':
            continue  # a quote escaped in a string of the escaped JSON
        elif token == "{":
            count += 1
            stack.append(count)
        elif len(stack) > (bases[-1] if level else 0):
            stack.pop()
        else:
            continue
        bounds.append(m.end())
        ids.append(stack[-1] if stack else 0)
        levels.append(level)
    return bounds, ids, levels


def _at(scope: tuple[list[int], ...], position: int, column: int = 1) -> int:
    i = bisect.bisect_right(scope[0], position) - 1
    return scope[column][i] if i >= 0 else 0


class _SecretScope:
    """Whether a `data` at a position is a Secret's: its YAML mapping holds `kind: Secret` or, a flow map's
    inside a brace object (YAML's flow mapping, JSON), that object does. Read at the first `data` asked
    about: most documents have none."""

    def __init__(self, text: str):
        self.text = text
        self.read = False

    def _read(self) -> None:
        self.read = True
        kinds = [m.start() for m in K8S_SECRET_KIND.finditer(self.text)]
        flow_kinds = list(K8S_SECRET_KIND_FLOW.finditer(self.text))
        self.yaml = _yaml_mappings(self.text) if kinds else ([], [])
        self.objects = _json_objects(self.text) if flow_kinds else ([0], [0], [0])
        self.secret_mappings = {_at(self.yaml, p) for p in kinds}
        # A `kind` in JSON as a key, in its own form: a string's text (`"description": "kind: Secret"`) is none.
        self.secret_objects = {
            _at(self.objects, m.start())
            for m in flow_kinds
            if _at(self.objects, m.start(), 2) == _quote_depth((m.group("q") or "").count("\\"))
        } - {0}

    def holds(self, position: int, flow: bool, depth: int = 0) -> bool:
        """`depth`: the `data` is a key of JSON escaped in a string that many times."""
        if not self.read:
            self._read()
        if flow and _at(self.objects, position, 2) != depth:
            return False  # a string's text, or escaped JSON read where the text has none
        # A YAML map's `data:` is judged by its mapping alone: a stray `{` in the text around it (code, prose)
        # is no object it is in.
        inside = _at(self.objects, position) if flow else 0
        if inside:
            return inside in self.secret_objects
        return bool(self.secret_mappings) and _at(self.yaml, position) in self.secret_mappings


def secret_map_replacer(mark: Mark, text: str) -> Callable[[re.Match], tuple[str, int] | None]:
    """A Secret's YAML `data:` or `stringData:` map (K8S_SECRET_MAP): every value replaced alone. A flow map
    on the line below the key (`data:\n  {password: UzNj}`) is secret_flow_replacer's, where it reads it."""
    scope = _SecretScope(text)

    def replace(m: re.Match) -> tuple[str, int] | None:
        if m.group("entries").lstrip().startswith("{") and K8S_SECRET_FLOW.match(m.string, m.start("field")):
            return None
        if m.group("field") == "data" and not scope.holds(m.start(), flow=False):
            return None
        entries, replaced = _secret_map(m.group("entries"), mark, lambda: anchor_names(m.string, m.start()))
        return (m.group("lead") + entries, replaced) if replaced else None

    return replace


def secret_flow_replacer(mark: Mark, text: str) -> Callable[[re.Match], tuple[str, int] | None]:
    """A Secret's `data` or `stringData` as a flow map or JSON (K8S_SECRET_FLOW): every value replaced alone."""
    scope = _SecretScope(text)

    def replace(m: re.Match) -> tuple[str, int] | None:
        depth = _quote_depth(len(m.group("eq") or '"') - 1)
        if m.group("field") == "data" and not scope.holds(m.start(), flow=True, depth=depth):
            return None
        entries, replaced = _flow_map(m.group("entries"), mark, lambda: anchor_names(m.string, m.start()), depth)
        return (m.group("lead") + entries, replaced) if replaced else None

    return replace
