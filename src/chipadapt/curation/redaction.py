"""Redaction of e-mail addresses and credentials, in a document's text and in its path.

A credential is recognised three ways: by a published format (a private key block, an AWS, GitHub,
GitLab, Slack, Stripe, Google, Hugging Face or OpenAI key, a JWT, a Slack webhook, the password in a URL,
an Ansible vault, an AWS secret key beside its id or random enough alone), by its context (`Authorization:
Bearer ...`, .netrc, `mysql -p...`, `sshpass -p`, `--password ...`, a connection string's `Password=`, a
login's second argument, `the password is ...`), or by the name it is assigned to (`DB_PASSWORD=...`,
`"api_key": "..."`, Tcl `set ::env(LM_LICENSE_PASSWORD) ...`, `ENV`, `#define`, `<password>`, `<add
key="ApiKey" value=...>`, `set_password("...")`, a YAML block or anchor). The rule is one: a name that says
credential, and a value that looks like one. An assigned value is replaced whole, to its closing quote or,
unquoted, to the next whitespace (at the start of a YAML, ini or .env line, to the line's end less a
comment): a value cut at its first unusual character (`Tr0ub4dor&3...`) is a value left in the corpus. Code
that merely names a credential (`token = tokens[i]`, `connect(password=password)`, `assign secret_key =
round_key_reg;`, `AES_KEY = 128'h2b7e...;`), a path (`PWD=/home/alice`), a test's result or a pulse
width under the short names pass, pw, pwd (`PASS: test_uart_1`, `PW: 100MHz`) and a message about a password
(`forgot_password: Forgot your password?`) are kept, and so is the `;` or `)` that ends a statement.
Every pattern runs in time linear in the text: a corpus holds megabyte-long lines of base64.
"""

import hashlib
import hmac
import re
from collections.abc import Callable

from chipadapt.curation.redaction_aws import is_aws_secret, is_named_aws_secret
from chipadapt.curation.redaction_forms import (
    ANSIBLE_VAULT,
    ASSIGNMENTS,
    AWS_NAMED,
    AWS_SECRET,
    BASIC_AUTH,
    CONTEXT_FORMATS,
    EMAIL,
    FORMS,
    PRIVATE_KEY,
    TOKEN_FORMATS,
    URL_PASSWORD,
    YAML_ALIAS,
    YAML_ANCHOR,
    YAML_BLOCK,
    YAML_LIST,
)
from chipadapt.curation.redaction_value import UPPER_SNAKE, credential_kind, is_secret, says_password, split_tail

# A word in a sentence after `password`: 6 or more characters with a letter and a digit (`hunter22`); a
# word of letters (`the password is wrong`) is English.
_SENTENCE_PASSWORD = re.compile(r"(?=.*[A-Za-z])(?=.*\d)\S{6,64}")
# An ini or TOML `[section]` header: a name at the line's start, plain, dotted or quoted (`[db]`,
# `[tool.ruff]`, `[remote "origin"]`); not a footnote `[1]` nor an indented list `  [a]`. Under one, an
# unindented `NAME = value` is config, not code, unless the document is code (a `def`, a `;` ending a line).
_INI_SECTION = re.compile(r"(?m)^\[(?:[A-Za-z_][\w\-]*(?:\.[\w\-]+)*(?:[ \t]+\"[^\"\n]*\")?|\"[^\"\n]+\")\][ \t]*\r?$")
_CODE_SIGNAL = re.compile(
    r"(?m)^[ \t]*(?:def|class|import|from|module|assign|always|function|proc|return|if|for|while)\b|[;{][ \t]*\r?$"
)
# Words that make a line code, not a phrase: `api_key = None if cfg is None else cfg.key`.
_CODE_WORDS = {"if", "else", "elif", "for", "while", "lambda", "return", "yield", "await", "new", "function"}
_CODE_WORDS |= {"None", "True", "False", "null", "nil", "undefined", "and", "or", "not"}
_PHRASE = re.compile(r"[^\s()\[\]{}<>=|&+*/\\,;\"'`$]+(?:[ \t]+[^\s()\[\]{}<>=|&+*/\\,;\"'`$]+)+")
# Where pass, pw and pwd are code, never a password (see _SHORT_NAME in redaction_value.py): a Verilog statement,
# a Tcl `set`, a shell `export` or csh `setenv`.
_SHORT_NAME_CODE = re.compile(
    r"^[ \t]*(?:assign|export|set|setenv|localparam|parameter|wire|logic|reg)\b|<=|;[ \t]*\r?$"
)


Mark = Callable[[str, str], str]  # (placeholder, what it replaces) -> the text written instead


def _plain(placeholder: str, _original: str) -> str:
    return f"<{placeholder}>"


def _line_value(name: str, line: str, config: bool = False) -> tuple[str, str] | None:
    """The value of a line's `NAME: value` to be replaced and what follows it (a comment, an end of
    statement), or None where the line is kept: the value is one word judged like any other, or several
    when the first is a secret or all are a phrase (`correcthorse battery staple`), not code."""
    value = re.split(r"[ \t]#", line, maxsplit=1)[0].rstrip()
    rest = line[len(value) :]
    if not any(c.isspace() for c in value):
        core, tail = split_tail(value)
        return (core, tail + rest) if is_secret(name, value, False, config) else None
    first = value.split()[0]
    if is_secret(name, first, False, config) or (
        _PHRASE.fullmatch(value) and not _CODE_WORDS & set(value.split()) and is_secret(name, value, True)
    ):
        return value, rest
    return None


def _line_around(m: re.Match) -> str:
    """The line a match is on, at most 200 characters either side of it (a megabyte-long line is not
    scanned again for each match in it)."""
    text, start, end = m.string, m.start(), m.end()
    lo, hi = max(0, start - 200), min(len(text), end + 200)
    before = text.rfind("\n", lo, start)
    after = text.find("\n", end, hi)
    return text[before + 1 if before >= 0 else lo : after if after >= 0 else hi]


# Forms in which pass, pw and pwd are a Tcl or csh variable, never a password (see _SHORT_NAME).
_SHORT_NAME_NEVER = {"assigned_secret_tcl", "assigned_secret_setenv"}


def _assignment_replacer(
    mark: Mark, counter: list[int], ini_start: int | None, form: str, code: bool
) -> Callable[[re.Match], str]:
    """`ini_start`: where the document's first ini `[section]` header is (None: it has none, or it is code).
    `form`: the pattern's name in ASSIGNMENTS or FORMS. `code`: the document shows signs of code."""

    def replace(m: re.Match) -> str:
        groups = m.groupdict()
        name = m.group("name") or "password"  # a form with no name (`mysql -p`, `login(u, pw)`) has a password
        if form == "connection_string_password":
            name = "password"  # in a connection string `Pwd=` is the password, whatever else pwd names
        if credential_kind(name) == "short" and (form in _SHORT_NAME_NEVER or _SHORT_NAME_CODE.search(_line_around(m))):
            return m.group(0)
        if groups.get("call") is not None and m.group("q") and UPPER_SNAKE.fullmatch(m.group("qv")):
            return m.group(0)  # `use_token("GITHUB_TOKEN")` passes a secret's name
        after = ""
        if groups.get("lv") is not None:  # a line's value, to its end
            # YAML `NAME: v` and unspaced `NAME=v` (.env, .properties, shell) are config; spaced `NAME = v`
            # is config on an unindented line under an ini section or, after a name that says password, in a
            # document with no sign of code (a .properties file, a README's `password = my_db.pass_01`), and
            # code (`password = default_password`, `secret_key = round_key_reg`) elsewhere. Config still
            # keeps a value that ends in the name's own word (`password = args.password`).
            ini = ini_start is not None and m.start() > ini_start and m.group("lead")[:1] not in " \t"
            # ... and there only a value with a digit: `DB_PASSWORD = other_module.value` names a variable.
            prose = not code and says_password(name) and bool(re.match(r"\S*\d", m.group("lv")))
            config = groups.get("op") == ":" or groups.get("sp") == "" or ini or prose
            found = _line_value(name, m.group("lv"), config and not re.search(r"[,;)]$", m.group("lv").rstrip()))
            if found is None:
                return m.group(0)
            (value, after), opening, closing = found, "", ""
        elif groups.get("xv") is not None:  # XML element text: a literal, like a quoted string
            value, opening, closing = m.group("xv"), "", ""
            if not is_secret(name, value, True):
                return m.group(0)
        elif groups.get("pv") is not None:  # a word in a sentence: a password when it looks like one
            word = m.group("pv")
            core = word.lstrip("`\"'").rstrip(".,;:!?)").rstrip("`\"'")  # `hunter22`. -> hunter22
            start = word.index(core) if core else 0
            if not (_SENTENCE_PASSWORD.fullmatch(core) and is_secret(name, core, False)):
                return m.group(0)
            counter[0] += 1
            return f"{m.group('lead')}{word[:start]}{mark('secret', core)}{word[start + len(core) :]}"
        elif groups.get("bv") is not None:  # Tcl {braced}
            value, opening, closing = groups["bv"], "{", groups["bend"]
        elif groups.get("q"):
            value, opening, closing = m.group("qv"), m.group("q"), m.group("qend")
        else:
            value, after = split_tail(m.group("uv"))
            opening, closing = "", ""
        if groups.get("lv") is None and groups.get("xv") is None and not is_secret(name, value, bool(opening)):
            return m.group(0)
        counter[0] += 1
        return f"{m.group('lead')}{opening}{mark('secret', value)}{closing}{after}"

    return replace


def _block_replacer(mark: Mark) -> Callable[[re.Match], str | None]:
    """A YAML block under a credential name becomes one placeholder at the block's indentation."""

    def replace(m: re.Match) -> str | None:
        block = m.group("yb")
        value = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if not is_secret(m.group("name"), value, True):
            return None
        cr = "\r" if block.endswith("\r") else ""  # a CRLF line's end stays as it was
        return m.group("lead") + mark("secret", block.removesuffix(cr)) + cr

    return replace


def _list_replacer(mark: Mark) -> Callable[[re.Match], str | None]:
    """A YAML list under a credential name: each item judged as the name's value, and replaced alone."""

    def replace(m: re.Match) -> str | None:
        name, replaced = m.group("name"), 0

        def item(line: re.Match) -> str:
            nonlocal replaced
            quoted = re.fullmatch(r"([\"'])(.*)\1[ \t]*(#.*)?", line.group("v"))
            if quoted and is_secret(name, quoted.group(2), True):
                found = quoted.group(2), line.group("v")[len(quoted.group(2)) + 1 :]
                opening = quoted.group(1)
            else:
                found, opening = (None if quoted else _line_value(name, line.group("v"), config=True)), ""
            if found is None:
                return line.group(0)
            replaced += 1
            return f"{line.group('dash')}{opening}{mark('secret', found[0])}{found[1]}"

        items = re.sub(r"(?m)^(?P<dash>[ \t]*-[ \t]+)(?P<v>[^\r\n]*)", item, m.group("items"))
        return m.group("lead") + items if replaced else None

    return replace


def _anchor_replacer(mark: Mark, text: str) -> Callable[[re.Match], str | None]:
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
            found, opening = _line_value(name, value, config=True), ""
        if found is None:
            return None
        return f"{m.group('lead')}{opening}{mark('secret', found[0])}{found[1]}"

    return replace


def redact(text: str, mark: Mark = _plain) -> tuple[str, dict[str, int]]:
    """`text` with e-mail addresses and credentials replaced (by <email>, <secret>), and how many of each."""
    counts: dict[str, int] = {}

    def run(name: str, pattern: re.Pattern, replacement: Callable[[re.Match], str | None]) -> None:
        """Each match replaced by `replacement`'s text, or kept where that is None, and counted if replaced."""
        nonlocal text
        replaced = 0

        def counted(m: re.Match) -> str:
            nonlocal replaced
            out = replacement(m)
            replaced += out is not None
            return m.group(0) if out is None else out

        text = pattern.sub(counted, text)
        if replaced:
            counts[name] = counts.get(name, 0) + replaced

    run("private_key", PRIVATE_KEY, lambda m: mark("secret", m.group(0)))
    run("url_password", URL_PASSWORD, lambda m: m.group(1) + mark("secret", m.group(2)))
    run("email", EMAIL, lambda m: mark("email", m.group(0)))
    if "$ANSIBLE_VAULT;" in text:
        run("ansible_vault", ANSIBLE_VAULT, lambda m: m.group("ind") + mark("secret", m.group(0).strip()))
    run("yaml_block_secret", YAML_BLOCK, _block_replacer(mark))
    run("yaml_anchor_secret", YAML_ANCHOR, _anchor_replacer(mark, text))
    run("yaml_list_secret", YAML_LIST, _list_replacer(mark))
    code = bool(_CODE_SIGNAL.search(text))
    # Assignments before formats: `set api_key "sk_live_..."` is counted as what it is, an assignment.
    for name, pattern in {**ASSIGNMENTS, **FORMS}.items():
        counter = [0]
        section = None if code else _INI_SECTION.search(text)  # again: earlier replacements moved it
        replacer = _assignment_replacer(mark, counter, section and section.start(), name, code)
        text = pattern.sub(replacer, text)
        if counter[0]:
            # a line's `NAME: value` is counted as the assignment it is
            key = name.removesuffix("_line")
            counts[key] = counts.get(key, 0) + counter[0]
    # After assignments (`AWS_SECRET_ACCESS_KEY=...` is counted as one), before the key id beside a bare key
    # is replaced: the id is what tells a secret key from other base64.
    run(
        "aws_secret_key",
        AWS_SECRET,
        lambda m: mark("secret", m.group(0)) if is_aws_secret(m.string, *m.span()) else None,
    )
    run(
        "aws_secret_key",
        AWS_NAMED,
        lambda m: m.group(1) + mark("secret", m.group(2)) if is_named_aws_secret(m.group(2)) else None,
    )
    for name, pattern in BASIC_AUTH.items():
        run(name, pattern, lambda m: m.group(1) + mark("secret", m.group(2)))
    for name, pattern in TOKEN_FORMATS.items():
        run(name, pattern, lambda m: mark("secret", m.group(0)))
    for name, pattern in CONTEXT_FORMATS.items():
        run(name, pattern, lambda m: m.group(1) + mark("secret", m.group(2)))
    return text, counts


def redact_path(path: str, key: bytes) -> tuple[str, dict[str, int]]:
    """A file's path redacted like its text (`docs/alice.smith@chipco.com_notes.md`), each placeholder
    tagged with a keyed hash of what it replaces: two files named after two people stay two paths (a
    path is the document's id in deduplication), and without the key, never written, the tag says
    nothing about the address."""

    def tagged(placeholder: str, original: str) -> str:
        return f"<{placeholder}-{hmac.new(key, original.encode(), hashlib.sha256).hexdigest()[:8]}>"

    return redact(path, tagged)
