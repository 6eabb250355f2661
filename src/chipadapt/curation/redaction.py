"""Redaction of e-mail addresses and credentials, in a document's text and in its path.

A credential is recognised three ways: by a published format (a private key block, an AWS, GitHub,
GitLab, Slack, Stripe, Google, Hugging Face or OpenAI key, a JWT, a Slack webhook, the password in a URL),
by its context (`Authorization: Bearer ...`, .netrc, `mysql -p...`, `sshpass -p`, `--password ...`), or by
the name it is assigned to (`DB_PASSWORD=...`, `"api_key": "..."`, Tcl `set ::env(LM_LICENSE_PASSWORD) ...`,
`ENV`, `#define`, `<password>`). An assigned value is replaced whole, to its closing quote or, unquoted, to
the next whitespace (at the start of a YAML, ini or .env line, to the line's end less a comment): a value
cut at its first unusual character (`Tr0ub4dor&3...`) is a value left in the corpus. Code that merely
names a credential (`token = tokens[i]`, `connect(password=password)`, `assign secret_key = round_key_reg;`,
`AES_KEY = 128'h2b7e...;`) is kept, and so is the `;` or `)` that ends the statement around a value.
Every pattern runs in time linear in the text: a corpus holds megabyte-long lines of base64.
"""

import hashlib
import hmac
import math
import re
from collections.abc import Callable

# Its end is "no letter or digit next", not \b: `_` is a word character, and a file name such as
# `alice.smith@chipco.com_notes.md` has no word boundary after the address.
# A match starts only where a run of address characters starts (not at each `.` or `-` inside one, which
# scanned every run to its end again and again: quadratic time on a long base64 line).
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?![A-Za-z0-9])")
# To its END line or, in a truncated copy that has none, to the end of the document: the key's body is
# the secret, and a missing END line must not let it through.
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)", re.S
)
# `scheme://user:PASSWORD@host`: a database or proxy address with its password in it; the user may be
# empty (`redis://:PASSWORD@cache`). Starts only where a run of scheme characters starts (linear time).
URL_PASSWORD = re.compile(r"((?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)(?=@)")
# Published formats, recognised wherever they stand.
TOKEN_FORMATS = {
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    "slack_token": re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}\b"),
    "stripe_key": re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    # OpenAI and Anthropic (`sk-`, `sk-proj-`, `sk-ant-`); a digit in it tells a key from a CSS class name.
    "openai_key": re.compile(r"\bsk-(?=[A-Za-z0-9_\-]{20})(?=[A-Za-z_\-]{0,100}\d)[A-Za-z0-9_\-]+"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}"),
}
# Each a credential after a context that names none: (prefix kept, secret replaced).
CONTEXT_FORMATS = {
    "slack_webhook": re.compile(r"(\bhooks\.slack\.com/services/)([A-Za-z0-9_\-/]+)"),
    # `Authorization: Bearer ...` in a header, a curl `-H`, a JSON or Python dict.
    "authorization": re.compile(
        r"(?i)(\b(?:proxy-)?authorization[\"']?[ \t]*[:=,][ \t]*[\"']?(?:bearer|basic|token)[ \t]+)"
        r"((?=[A-Za-z0-9._~+/\-]*[0-9=+/])[A-Za-z0-9._~+/\-]{8,}=*)"
    ),
}

# A name ending in one of these may hold a credential; which ones do is decided by _kind.
_WORDS = (
    r"(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|pass[_-]?phrase"
    r"|token|credentials?|key|pass|pwd)"
)
# Bounded: unbounded, every `_`, `.` or `-` in a long run began a match that scanned the run to its end, so
# a 40 KB line of `a_a_...` took a minute and a 1 MB base64 blob hours. No credential name is longer.
_NAME = r"(?P<name>[A-Za-z0-9_.\-]{0,64}?" + _WORDS + r")"
# A quoted value runs to its closing quote (any characters but that quote, escapes allowed) or, left
# open, to the end of the line; an unquoted one runs to the next whitespace.
_QUOTED = r"(?P<q>[\"'])(?P<qv>(?:\\.|(?!(?P=q))[^\\\n])*)(?P<qend>(?P=q)|$)"
_VALUE = r"(?:" + _QUOTED + r"|(?P<uv>[^\s\"'][^\s]*))"
# Within a line (a call's keyword argument, a minified object) an unquoted value also ends at `,` or `;`:
# `connect(user=u,password=pw,host=h)` and `{password:e.password,user:e.user}` are code to the next `,`.
_VALUE_IN_LINE = r"(?:" + _QUOTED + r"|(?P<uv>[^\s\"',;][^\s,;]*))"
ASSIGNMENTS = {
    # At the start of a line (YAML, ini, .env, Dockerfile `ENV NAME value`), an unquoted value runs to the end
    # of the line, less a ` #` comment: `password: correcthorse battery staple` is one value.
    "assigned_secret_line": re.compile(
        r"(?im)^(?P<lead>[ \t]*(?:export[ \t]+|-[ \t]+)?" + _NAME + r"[ \t]*(?:=(?!=)|:(?!:))[ \t]*)"
        r"(?P<lv>[^\s\"'][^\n]*)"
    ),
    "assigned_secret_env": re.compile(
        r"(?m)^(?P<lead>[ \t]*ENV[ \t]+(?i:" + _NAME + r")[ \t]+)(?P<lv>[^\s\"'=][^\n]*)"
    ),
    # `NAME = v`, `NAME: v`, `NAME => v`, `NAME := v`, `export NAME=v`, `"NAME": v`, `env["NAME"] = v`
    # (Python, shell, YAML, JSON, Perl, make); `==` is a comparison, not an assignment.
    "assigned_secret": re.compile(
        # The lookahead (possessive: one scan) finds a name's run followed by an operator before the slower
        # search for a credential word in it: five times faster on text full of `_` and `-`.
        r"(?im)(?P<lead>(?<![A-Za-z0-9])(?=[A-Za-z0-9_.\-]{1,90}+[\"']?\]?[ \t]*[=:?])"
        + _NAME
        + r"[\"']?\]?[ \t]*(?:=>|:=|\?=|=(?!=)|:(?!:))[ \t]*)"
        + _VALUE_IN_LINE
    ),
    # Tcl `set NAME v`, `set ::env(NAME) v`, `set env(NAME) {v}`, the common form in EDA scripts.
    "assigned_secret_tcl": re.compile(
        r"(?im)(?P<lead>(?<![\w$])set[ \t]+(?:::)?(?:env\()?" + _NAME.replace(r"_.\-", r"_.\-:") + r"\)?[ \t]+)"
        r"(?:\{(?P<bv>[^}\n]*)(?P<bend>\}|$)|" + _VALUE + r")"
    ),
    # csh `setenv NAME v`.
    "assigned_secret_setenv": re.compile(r"(?im)(?P<lead>(?<![\w$])setenv[ \t]+" + _NAME + r"[ \t]+)" + _VALUE),
    # C `#define API_KEY "..."`.
    "assigned_secret_define": re.compile(r"(?im)(?P<lead>^[ \t]*#[ \t]*define[ \t]+" + _NAME + r"[ \t]+)" + _VALUE),
    # XML `<password>...</password>`.
    "assigned_secret_xml": re.compile(r"(?i)(?P<lead><" + _NAME + r">)(?P<xv>[^<\n]+)(?=</(?P=name)>)"),
    # .netrc `machine HOST login USER password PASSWORD`.
    "netrc_password": re.compile(
        r"(?P<lead>\bmachine\s+\S+(?:\s+(?:login|account)\s+\S+)*\s+(?P<name>password)\s+)" + _VALUE
    ),
    # Command lines: `--password VALUE` (the `=` form is an assignment), `mysql -pVALUE`, `sshpass -p VALUE`.
    # `-p` is a password only after these two: elsewhere it is a port, a path, a parent flag.
    "command_line_password": re.compile(
        r"(?i)(?P<lead>(?<![\w-])--" + _NAME.replace("{0,64}?", "{0,40}?") + r"[ \t]+)(?!-)" + _VALUE
    ),
    "mysql_password": re.compile(
        r"(?P<lead>\bmysql(?:admin|dump|import|show|check)?\b[^\n]*?[ \t]-p)(?P<name>)" + _VALUE
    ),
    "sshpass_password": re.compile(r"(?P<lead>\bsshpass\b[^\n]*?[ \t]-p[ \t]*)(?P<name>)" + _VALUE),
}

# Shorter values are left: `token = "<s>"`, `password: str`, `key = k` are code, not credentials.
MIN_SECRET_CHARS = 8
_STRONG = re.compile(
    r"(?i)(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|pass[_-]?phrase)$"
)
_TOKEN = re.compile(r"(?i)(?:token|credentials?)$")
# Not a value but a reference to one: $VAR, ${VAR}, $(cmd), $env(VAR), {{ template }}, %(name)s,
# a <placeholder> (curation's own <secret> included, so a curated corpus curated again is left as it is).
# Tcl `$::env(PASS)` and `$cfg(pw)` are references too.
_REFERENCE = re.compile(
    r"\$\{[^{}]*\}|\$(?:::)?[A-Za-z_][\w.:]*(?:\([\w:]*\))?|\$\(.*\)|\$?\{\{.*\}\}|%\(\w+\)s|<[^<>\s]*>"
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


def _kind(name: str) -> str | None:
    """How strongly a name says its value is a credential: "strong" (a password, a secret, an API key,
    an UPPER_CASE `*_KEY`), "token" (token and credentials also name code), "weak" (a lower-case `*_key`,
    a credential only when its value looks like one), or None (`key` alone: a dict key, a loop variable)."""
    last = re.split(r"[.:]", name)[-1]
    if re.search(r"(?i)(?:pass|pwd)$", last) and not _STRONG.search(last):
        # `DB_PASS`, `MYSQL_PWD`; not `PWD` (the shell's directory), `bypass`, `first_pass`.
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
    `password)` in `connect(password=password)` -> (`password`, `)`); a closer the value opened stays."""
    # Each closer's surplus over its opener counted once: counted again for every trailing closer, a line
    # ending in 200,000 `)` took minutes.
    surplus = {c: value.count(c) - value.count(opener) for c, opener in _CLOSERS.items()}
    end = len(value)
    while end:
        c = value[end - 1]
        if c in ";,":
            end -= 1
        elif c in _CLOSERS and surplus[c] > 0:
            surplus[c] -= 1
            end -= 1
        else:
            break
    return value[:end], value[end:]


def is_secret(name: str, value: str, quoted: bool) -> bool:
    """Whether `value`, assigned to `name`, is to be redacted."""
    kind = _kind(name)
    bare = value if quoted else split_tail(value)[0]  # a statement's end is not the value's
    if kind is None or len(bare) < MIN_SECRET_CHARS or _REFERENCE.fullmatch(bare):
        return False
    if not quoted and _CODE.fullmatch(bare):
        return False
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
    return True


Mark = Callable[[str, str], str]  # (placeholder, what it replaces) -> the text written instead


def _plain(placeholder: str, _original: str) -> str:
    return f"<{placeholder}>"


def _line_value(name: str, line: str) -> tuple[str, str] | None:
    """The value of a line's `NAME: value` to be replaced and what follows it (a comment, an end of
    statement), or None where the line is kept: the value is one word judged like any other, or several
    when the first is a secret or all are a phrase (`correcthorse battery staple`), not code."""
    value = re.split(r"[ \t]#", line, maxsplit=1)[0].rstrip()
    rest = line[len(value) :]
    if not any(c.isspace() for c in value):
        core, tail = split_tail(value)
        return (core, tail + rest) if is_secret(name, value, False) else None
    first = value.split()[0]
    if is_secret(name, first, False) or (
        _PHRASE.fullmatch(value) and not _CODE_WORDS & set(value.split()) and is_secret(name, value, True)
    ):
        return value, rest
    return None


def _assignment_replacer(mark: Mark, counter: list[int], implied_name: str) -> Callable[[re.Match], str]:
    def replace(m: re.Match) -> str:
        groups = m.groupdict()
        name = m.group("name") or implied_name
        after = ""
        if groups.get("lv") is not None:  # a line's value, to its end
            found = _line_value(name, m.group("lv"))
            if found is None:
                return m.group(0)
            (value, after), opening, closing = found, "", ""
        elif groups.get("xv") is not None:  # XML element text: a literal, like a quoted string
            value, opening, closing = m.group("xv"), "", ""
            if not is_secret(name, value, True):
                return m.group(0)
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


def redact(text: str, mark: Mark = _plain) -> tuple[str, dict[str, int]]:
    """`text` with e-mail addresses and credentials replaced (by <email>, <secret>), and how many of each."""
    counts: dict[str, int] = {}

    def run(name: str, pattern: re.Pattern, replacement) -> None:
        nonlocal text
        text, n = pattern.subn(replacement, text)
        if n:
            counts[name] = counts.get(name, 0) + n

    run("private_key", PRIVATE_KEY, lambda m: mark("secret", m.group(0)))
    run("url_password", URL_PASSWORD, lambda m: m.group(1) + mark("secret", m.group(2)))
    run("email", EMAIL, lambda m: mark("email", m.group(0)))
    # Assignments before formats: `set api_key "sk_live_..."` is counted as what it is, an assignment.
    for name, pattern in ASSIGNMENTS.items():
        counter = [0]
        text = pattern.sub(_assignment_replacer(mark, counter, "password"), text)
        if counter[0]:
            # a line's `NAME: value` is counted as the assignment it is
            key = name.removesuffix("_line")
            counts[key] = counts.get(key, 0) + counter[0]
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
