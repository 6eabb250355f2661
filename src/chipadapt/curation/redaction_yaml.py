"""Replacers for the YAML forms redaction_forms finds beyond one line's `NAME: value`: a block scalar, a
list (block or flow) and an anchored value under a credential name (a Kubernetes Secret's map is
redaction_secret's). Each judges its values with redaction_value, like an assignment, and returns None where
it keeps the match."""

import json
import re
from collections.abc import Callable

from chipadapt.curation.redaction_escaped import ESCAPED_ITEM
from chipadapt.curation.redaction_forms import TOKEN_FORMATS, YAML_ALIAS
from chipadapt.curation.redaction_value import UPPER_SNAKE, credential_kind, is_secret, line_value, looks_opaque

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


def _unescaped(value: str, quote_run: int) -> str:
    """An item of JSON escaped d times as its string holds it (`\\\\u0120Initialize` at depth 1 is `ĠInitialize`):
    its quote is 2^d - 1 backslashes (`quote_run`) and `"`, and it is read d + 1 times. As far as it reads as
    JSON: text that only looks like escaped JSON (a shell line's `\\"`) is judged as it stands."""
    for _ in range((quote_run + 1).bit_length()):
        try:
            value = json.loads(f'"{value}"', strict=False)
        except ValueError:
            break
    return value


def _escaped_item_is_secret(name: str, plural: bool, value: str, quote_run: int) -> bool:
    """Whether an escaped list's item is a secret: judged as the name's quoted value, and under a plural name
    (`secrets`, `tokens`), a list of names as often as of secrets, not where it is a variable's name
    (`GITHUB_TOKEN`, as `use_token("GITHUB_TOKEN")` passes one on); under a plural token's name (`tokens`,
    `stop_tokens`: a tokenizer's, a model config's words) only where it looks random or has a published format."""
    if not is_secret(name, value, True):
        return False
    if not plural:
        return True
    if UPPER_SNAKE.fullmatch(value):
        return False
    if credential_kind(name) != "token":
        return True
    text = _unescaped(value, quote_run)
    return looks_opaque(text) or any(form.fullmatch(text) for form in TOKEN_FORMATS.values())


def escaped_list_replacer(mark: Mark) -> Callable[[re.Match], tuple[str, int] | None]:
    """A list under a credential name in escaped JSON (`\\"passwords\\": [\\"S3cret99\\"]`): each item judged
    (_escaped_item_is_secret), and replaced and counted alone; its quotes stay."""

    def replace(m: re.Match) -> tuple[str, int] | None:
        name, plural, replaced = m.group("name"), m.group("plural") is not None, 0

        def item(quoted: re.Match) -> str:
            nonlocal replaced
            if not _escaped_item_is_secret(name, plural, quoted.group("ev"), len(quoted.group("eb"))):
                return quoted.group(0)
            replaced += 1
            return quoted.group("eq") + mark("secret", quoted.group("ev")) + quoted.group("eq")

        items = ESCAPED_ITEM.sub(item, m.group("items"))
        return (m.group("lead") + items, replaced) if replaced else None

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
