"""Replacers for the YAML forms redaction_forms finds beyond one line's `NAME: value`: a block scalar, a
list (block or flow) and an anchored value under a credential name, and a Kubernetes Secret's map. Each
judges its values with redaction_value, like an assignment (a Secret's values are all secrets), and returns
None where it keeps the match."""

import bisect
import re
from collections.abc import Callable

from chipadapt.curation.redaction_forms import K8S_SECRET_KIND, YAML_ALIAS, YAML_DOCUMENT_START
from chipadapt.curation.redaction_value import credential_kind, is_reference, is_secret, line_value

Mark = Callable[[str, str], str]  # (placeholder, what it replaces) -> the text written instead

# A list item that is a mapping (`- name: prod`, `- min_length: 8`): a structure, not the name's value.
_MAPPING_ITEM = re.compile(r"[^\s:#\"'\[{][^\s:]*:(?:[ \t]|\r?$)")
_QUOTED_ITEM = re.compile(r"([\"'])(.*)\1([ \t]*(?:#.*)?\r?)")


def block_replacer(mark: Mark) -> Callable[[re.Match], str | None]:
    """A YAML block under a credential name becomes one placeholder at the block's indentation."""

    def replace(m: re.Match) -> str | None:
        block = m.group("yb")
        value = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if not is_secret(m.group("name"), value, True):
            return None
        cr = "\r" if block.endswith("\r") else ""  # a CRLF line's end stays as it was
        return m.group("lead") + mark("secret", block.removesuffix(cr)) + cr

    return replace


def _item(name: str, item: str, mark: Mark) -> str | None:
    """One list item under `name` with its value replaced, or None where it is kept: a mapping, a prose
    phrase (a Markdown bullet under `Password:` is a rule about one), code, a reference."""
    if _MAPPING_ITEM.match(item):
        return None
    quoted = _QUOTED_ITEM.fullmatch(item)
    if quoted:
        if not is_secret(name, quoted.group(2), True):
            return None
        return f"{quoted.group(1)}{mark('secret', quoted.group(2))}{quoted.group(1)}{quoted.group(3)}"
    if any(c.isspace() for c in re.split(r"[ \t]#", item, maxsplit=1)[0].strip()):
        return None
    found = line_value(name, item, config=True)
    return None if found is None else mark("secret", found[0]) + found[1]


def list_replacer(mark: Mark) -> Callable[[re.Match], tuple[str, int] | None]:
    """A YAML list under a credential name (`password:\n  - S3cret99`): each item judged as the name's value,
    and replaced and counted alone."""

    def replace(m: re.Match) -> tuple[str, int] | None:
        name, replaced = m.group("name"), 0

        def item(line: re.Match) -> str:
            nonlocal replaced
            out = _item(name, line.group("v"), mark)
            replaced += out is not None
            return line.group(0) if out is None else line.group("dash") + out

        items = re.sub(r"(?m)^(?P<dash>[ \t]*-[ \t]+)(?P<v>[^\r\n]*)", item, m.group("items"))
        return (m.group("lead") + items, replaced) if replaced else None

    return replace


def flow_list_replacer(mark: Mark) -> Callable[[re.Match], tuple[str, int] | None]:
    """A flow list under a credential name (`password: [S3cret99, hunter2x]`): each item alone."""

    def replace(m: re.Match) -> tuple[str, int] | None:
        name, replaced, out = m.group("name"), 0, []
        for part in m.group("items").split(","):
            core = part.strip()
            new = _item(name, core, mark) if core else None
            replaced += new is not None
            out.append(part if new is None else part.replace(core, new, 1))
        return (m.group("lead") + ",".join(out), replaced) if replaced else None

    return replace


def anchor_replacer(mark: Mark, text: str) -> Callable[[re.Match], str | None]:
    """`defaults: &db_pw hunter2` where some `password: *db_pw` uses it: the anchor's value is a password."""
    names: dict[str, str] = {}
    read = False

    def replace(m: re.Match) -> str | None:
        nonlocal read
        if not read:  # the aliases read at the first anchor: most documents have none, and this scan is slow
            names.update(
                (a.group("alias"), a.group("name"))
                for a in YAML_ALIAS.finditer(text)
                if credential_kind(a.group("name"))
            )
            read = True
        name, value = names.get(m.group("anchor")), m.group("av")
        if name is None:
            return None
        quoted = re.fullmatch(r"([\"'])(.*)\1[ \t\r]*(#.*)?", value)
        if quoted and is_secret(name, quoted.group(2), True):
            found = quoted.group(2), value[len(quoted.group(2)) + 1 :]
            opening = quoted.group(1)
        else:
            found, opening = line_value(name, value, config=True), ""
        if found is None:
            return None
        return f"{m.group('lead')}{opening}{mark('secret', found[0])}{found[1]}"

    return replace


# One entry of a Secret's map: its key (plain or quoted), `:`, and its value to the line's end. A plain key
# runs (greedy) to the first `:`, spaces before it included: a lazy key followed by `[ \t]*:` scanned the
# spaces after each of its characters again, seconds on a line of 40,000 spaces.
_MAP_ENTRY = re.compile(
    r"(?P<key>(?:\"[^\"\n]*\"[ \t]*|'[^'\n]*'[ \t]*|[^\s:#\"'][^:\n]*):)(?P<sp>[ \t]*)(?P<v>[^\r\n]*)"
)
_MAP_QUOTED = re.compile(r"([\"'])(.*)\1([ \t]*(?:#.*)?)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _map_value(value: str, mark: Mark) -> str | None:
    """One entry's value on its key's line, replaced, or None where it is kept: empty, a reference (a Helm
    template's `{{ .Values.password | b64enc }}`), a block scalar's indicator (its lines follow)."""
    quoted = _MAP_QUOTED.fullmatch(value)
    if quoted:
        inner = quoted.group(2)
        if not inner or is_reference(inner.strip()):
            return None
        return f"{quoted.group(1)}{mark('secret', inner)}{quoted.group(1)}{quoted.group(3)}"
    core = re.split(r"[ \t]#", value, maxsplit=1)[0].rstrip()
    if not core or core[0] in "|>#" or is_reference(core):
        return None
    return mark("secret", core) + value[len(core) :]


def _secret_map(entries: str, mark: Mark) -> tuple[str, int]:
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
        new = _map_value(entry.group("v"), mark) if entry else None
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


def secret_map_replacer(mark: Mark, text: str) -> Callable[[re.Match], tuple[str, int] | None]:
    """A Kubernetes Secret's `data:` or `stringData:`: every value replaced (and counted) alone, the keys
    kept. `data:` only in a YAML document (between `---` lines) whose `kind` is Secret."""
    documents: list[int] = []
    secrets: set[int] = set()
    read = False

    def in_secret(position: int) -> bool:
        nonlocal read
        if not read:  # read at the first `data:`: most documents have none
            documents.extend(m.start() for m in YAML_DOCUMENT_START.finditer(text))
            secrets.update(bisect.bisect_right(documents, m.start()) for m in K8S_SECRET_KIND.finditer(text))
            read = True
        return bisect.bisect_right(documents, position) in secrets

    def replace(m: re.Match) -> tuple[str, int] | None:
        if m.group("field") == "data" and not in_secret(m.start()):
            return None
        entries, replaced = _secret_map(m.group("entries"), mark)
        return (m.group("lead") + entries, replaced) if replaced else None

    return replace
