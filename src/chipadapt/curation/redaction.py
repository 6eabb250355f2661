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

import functools
import hashlib
import hmac
import math
import re
from collections.abc import Callable

from chipadapt.curation.redaction_aws import is_aws_secret
from chipadapt.curation.redaction_forms import (
    ANSIBLE_VAULT,
    ASSIGNMENTS,
    AWS_SECRET,
    CONTEXT_FORMATS,
    EMAIL,
    FORMS,
    PRIVATE_KEY,
    TOKEN_FORMATS,
    URL_PASSWORD,
    YAML_ALIAS,
    YAML_ANCHOR,
    YAML_BLOCK,
)

# Shorter values are left: `token = "<s>"`, `password: str`, `key = k` are code, not credentials.
MIN_SECRET_CHARS = 8
_STRONG = re.compile(
    r"(?i)(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|pass[_-]?phrase)$"
)
_TOKEN = re.compile(r"(?i)(?:token|credentials?)$")
# Not a value but a reference to one: $VAR, ${VAR}, $(cmd), $env(VAR), {{ template }}, %(name)s,
# a <placeholder> (curation's own <secret> included, so a curated corpus curated again is left as it is).
# Tcl `$::env(PASS)` and `$cfg(pw)` are references too, and so is a command's output, `$(...` or `` `...``,
# cut at a space: `pwd=$(dirname "$0")`.
_REFERENCE = re.compile(
    r"\$\{[^{}]*\}|\$(?:::)?[A-Za-z_][\w.:]*(?:\([\w:]*\))?|\$\(.*|`.*|\$?\{\{.*\}\}|%\(\w+\)s|<[^<>\s]*>"
    r"|\{[A-Za-z_]\w*\}"  # a format string's `{password}`
    # GitHub Actions `${{ secrets.X }}` (above), Symfony `%env(X)%`, Ruby `#{ENV["X"]}`, YAML tags `!secret name`
    r"|%env\([\w:]+\)%|#\{.*\}|![A-Za-z_]\w* \S+"
)
# Unquoted code: a structure, a call or a subscript, an attribute path, a variable name.
_CODE = re.compile(
    r"[(\[{].*"  # (, [ or { first: a structure, a Tcl command substitution
    r"|[A-Za-z_][\w.]*[(\[].*"  # getpass.getpass(), os.environ["X"], tokens[i]
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"  # args.password, settings.SECRET_KEY
    r"|_*[a-z]+(?:_[a-z]+)+|_*[A-Z]+(?:_[A-Z]+)+"  # round_key_reg, DEFAULT_PASSWORD
    r"|undefined|required|optional|nullable|string|boolean|integer"
    # A Verilog sized constant (`128'h2b7e...`, `32'hDEADBEEF`): RTL is what the corpus is for, and a key in
    # it is a design constant (or a published test vector), not a credential.
    r"|\d+'[sS]?[hHbBdDoO][0-9a-fA-F_xXzZ?]+"
)
# A password is often short: after a name that says password unambiguously (password, passwd, passphrase,
# secret), 6 or 7 letters and digits, both, are one (`password: abc123`); not a type (`uint64`) nor a hex
# number. Not after pass, pw or pwd, which name a test's result and a pulse width as often (`PW: 1024x8`).
_PASSWORD_NAME = re.compile(r"(?i)(?:passw(?:or)?d|pass[_-]?phrase|secret)$")
_SHORT_PASSWORD = re.compile(r"(?!(?:u?int|float|bytes|char)\d)(?!0[xX])(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9]{6,7}")
# A path (`PWD=/home/alice`, `password_file: ~/.pw`) is where a value is, not the value.
_PATH = re.compile(r"(?:~?/|\.\.?/)[\w.\-/~+@%]*")
# Words in a value that make it a message about a credential, not one: a UI string, a prompt.
_ABOUT_PASSWORD = re.compile(r"(?i)\b(?:passw(?:or)?ds?|passphrases?)\b")


def _is_config_word(name: str, value: str) -> bool:
    """In a config file, `my_secret_pass` and `foo.bar.baz` are values; `default_password` and
    `args.password`, which end in the name's own word, still name another variable."""
    if not re.fullmatch(r"[A-Za-z_]\w*(?:[._]\w+)+", value):
        return False
    word = re.search(r"(?i)[a-z]+$", name)
    return value.lower().rsplit(".", 1)[-1].rsplit("_", 1)[-1] != (word.group().lower() if word else "")


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
# A quoted value that is an identifier (`PRIMARY_KEY = 'user_id_column'`, `SORT_KEY = "created_at"`): after
# a plain `*_KEY` it names a column or a field; after a password it may well be the password.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)+")
# Words that make a line code, not a phrase: `api_key = None if cfg is None else cfg.key`.
_CODE_WORDS = {"if", "else", "elif", "for", "while", "lambda", "return", "yield", "await", "new", "function"}
_CODE_WORDS |= {"None", "True", "False", "null", "nil", "undefined", "and", "or", "not"}
_PHRASE = re.compile(r"[^\s()\[\]{}<>=|&+*/\\,;\"'`$]+(?:[ \t]+[^\s()\[\]{}<>=|&+*/\\,;\"'`$]+)+")
_CLOSERS = {")": "(", "]": "[", "}": "{"}
# What a tokenizer calls a token: <|endoftext|>, [PAD], or a plain word (`chat_template_token = "assistant"`).
_TOKENIZER_TOKEN = re.compile(r"[<\[].*[>\]]|[a-z_.\-]+")
# The bare short names pass, pw and pwd (and `*_pw`) name a test's result (`PASS: test_uart_1`), a pulse
# width (`PW: 100MHz`), a signal (`assign pw = cnt123;`) and the shell's directory (`PWD=build_dir2`) as
# often as a password. After one, a value is a password only where it looks random: quoted, 8 or more
# characters and no spaces; unquoted, one word of 8 to 64 characters with a letter and a digit and no `_`,
# `.` or `-` (which join the words of a name, a test, a version). Never a phrase (`PASS: No warnings`), and
# never in a Verilog statement (`assign`, `<=`, a `;` at the end), a Tcl `set`, a shell `export` or `setenv`.
_SHORT_NAME = re.compile(r"(?i)pass|pwd|pw|[\w\-]*[_\-]pw")
_RANDOM_WORD = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[^\s_.\-]{8,64}")
_SHORT_NAME_CODE = re.compile(
    r"^[ \t]*(?:assign|export|set|setenv|localparam|parameter|wire|logic|reg)\b|<=|;[ \t]*\r?$"
)
# A name that passes a secret's name on (`use_token("GITHUB_TOKEN2")`), not its value.
_UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


@functools.lru_cache(maxsize=4096)  # called for every match, and a document repeats its names
def _kind(name: str) -> str | None:
    """How strongly a name says its value is a credential: "strong" (a password, a secret, an API key,
    an UPPER_CASE `*_KEY`), "token" (token and credentials also name code), "weak" (a lower-case `*_key`,
    a credential only when its value looks like one), or None (`key` alone: a dict key, a loop variable)."""
    last = re.split(r"[.:]", name)[-1]
    if _SHORT_NAME.fullmatch(last):
        return "short"  # `PASS=`, `PW=`, `pw:`, `db_pw`: a password only where the value looks random
    if re.fullmatch(
        r"(?i)(?:db|user|admin|root|mysql|sql|ftp|smtp|mail|login|ldap|redis|app|sudo|wifi)_?p(?:ass|w)", last
    ):
        return "strong"  # `db_pass`, `dbPass`, `dbPw`: an account's password
    if re.search(r"(?i)(?:pass|pwd)$", last) and not _STRONG.search(last):
        # `DB_PASS`, `MYSQL_PWD`; not `bypass`, `first_pass`.
        return "strong" if re.fullmatch(r"[A-Z0-9_\-]*[_\-](?:PASS|PWD)", last) else None
    if _STRONG.search(last):
        return "strong"
    if _TOKEN.search(last):
        return "token"
    if re.search(r"(?i)key$", last) and len(last) > 3:
        return "strong" if re.fullmatch(r"[A-Z0-9_\-]*[_\-]KEY", last) else "weak"
    return None


def _looks_opaque(value: str) -> bool:
    """A random-looking string: long, no spaces, letters and digits mixed, many distinct characters."""
    if len(value) < 16 or any(c.isspace() for c in value):
        return False
    digits, letters = sum(c.isdigit() for c in value), sum(c.isalpha() for c in value)
    counts = [value.count(c) for c in set(value)]
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts)
    return digits >= 3 and letters >= 3 and entropy >= 3.3


def split_tail(value: str) -> tuple[str, str]:
    """An unquoted value and what ends the statement around it: `hunter2;` -> (`hunter2`, `;`),
    `password)` in `connect(password=password)` -> (`password`, `)`); a closer the value opened stays, and
    so does a quote that is not the string's around it (`"Pwd=Xy9#kLm2q"` -> (`Xy9#kLm2q`, `"`))."""
    # Each closer's surplus over its opener counted once: counted again for every trailing closer, a line
    # ending in 200,000 `)` took minutes.
    surplus = {c: value.count(c) - value.count(opener) for c, opener in _CLOSERS.items()}
    surplus |= {q: value.count(q) % 2 for q in "\"'"}
    end = len(value)
    while end:
        c = value[end - 1]
        if c in ";,":
            end -= 1
        elif c in "\"'" and surplus[c] > 0:
            surplus[c] -= 1
            end -= 1
        elif c in _CLOSERS and surplus[c] > 0:
            surplus[c] -= 1
            end -= 1
        else:
            break
    return value[:end], value[end:]


def _says_password(name: str) -> bool:
    return bool(_PASSWORD_NAME.search(re.split(r"[.:]", name)[-1])) and _kind(name) == "strong"


def is_secret(name: str, value: str, quoted: bool, config: bool = False) -> bool:
    """Whether `value`, assigned to `name`, is to be redacted. `config`: the assignment is a config file's
    line (YAML `NAME: value`, `.env`/.properties `NAME=value`, ini), where a word with `_` or `.` in it is a
    value, not a variable or an attribute."""
    kind = _kind(name)
    bare = value if quoted else split_tail(value)[0]  # a statement's end is not the value's
    if kind is None or _REFERENCE.fullmatch(bare) or _PATH.fullmatch(bare):
        return False
    if len(bare) < MIN_SECRET_CHARS and not (_says_password(name) and _SHORT_PASSWORD.fullmatch(bare)):
        return False
    if not quoted and _CODE.fullmatch(bare) and not (config and _is_config_word(name, bare)):
        return False
    if any(c.isspace() for c in bare) and _ABOUT_PASSWORD.search(bare):
        return False  # `forgot_password: Forgot your password?`: a message about one
    if bare.lower() in {name.lower(), re.split(r"[.:]", name)[-1].lower()}:
        return False  # `password=password`: a keyword argument passed on
    if quoted and _IDENTIFIER.fullmatch(bare) and re.search(r"(?i)(?<![a-z])key$", name):
        return False
    if kind == "token":
        if quoted:
            return not (_TOKENIZER_TOKEN.fullmatch(bare) or any(c.isspace() for c in bare))
        return any(c.isdigit() for c in bare)  # an opaque token holds digits; a name in code has none
    if kind == "weak":
        return _looks_opaque(bare)
    if kind == "short":
        if any(c.isspace() for c in bare):
            return False
        return (
            not (_IDENTIFIER.fullmatch(bare) or _UPPER_SNAKE.fullmatch(bare))
            if quoted
            else bool(_RANDOM_WORD.fullmatch(bare))
        )
    return True


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


def _assignment_replacer(mark: Mark, counter: list[int], ini_start: int | None, form: str) -> Callable[[re.Match], str]:
    """`ini_start`: where the document's first ini `[section]` header is (None: it has none, or it is code).
    `form`: the pattern's name in ASSIGNMENTS or FORMS."""

    def replace(m: re.Match) -> str:
        groups = m.groupdict()
        name = m.group("name") or "password"  # a form with no name (`mysql -p`, `login(u, pw)`) has a password
        if form == "connection_string_password":
            name = "password"  # in a connection string `Pwd=` is the password, whatever else pwd names
        if _kind(name) == "short" and (form in _SHORT_NAME_NEVER or _SHORT_NAME_CODE.search(_line_around(m))):
            return m.group(0)
        if groups.get("call") is not None and m.group("q") and _UPPER_SNAKE.fullmatch(m.group("qv")):
            return m.group(0)  # `use_token("GITHUB_TOKEN")` passes a secret's name
        after = ""
        if groups.get("lv") is not None:  # a line's value, to its end
            # YAML `NAME: v` and unspaced `NAME=v` (.env, .properties, shell) are config; spaced `NAME = v`
            # is config on an unindented line under an ini section, and code (`password = default_password`)
            # elsewhere.
            ini = ini_start is not None and m.start() > ini_start and m.group("lead")[:1] not in " \t"
            config = groups.get("op") == ":" or groups.get("sp") == "" or ini
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
        elif m.group("q"):
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


def _anchor_replacer(mark: Mark, text: str) -> Callable[[re.Match], str | None]:
    """`defaults: &db_pw hunter2` where some `password: *db_pw` uses it: the anchor's value is a password."""
    names: dict[str, str] = {}
    read = False

    def replace(m: re.Match) -> str | None:
        nonlocal read
        if not read:  # the aliases read at the first anchor: most documents have none, and this scan is slow
            names.update(
                (a.group("alias"), a.group("name")) for a in YAML_ALIAS.finditer(text) if _kind(a.group("name"))
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
    code = bool(_CODE_SIGNAL.search(text))
    # Assignments before formats: `set api_key "sk_live_..."` is counted as what it is, an assignment.
    for name, pattern in {**ASSIGNMENTS, **FORMS}.items():
        counter = [0]
        section = None if code else _INI_SECTION.search(text)  # again: earlier replacements moved it
        text = pattern.sub(_assignment_replacer(mark, counter, section and section.start(), name), text)
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
