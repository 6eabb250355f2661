"""Redaction of e-mail addresses and credentials, in a document's text and in its path.

A credential is recognised two ways: by a published format (a private key block, an AWS, GitHub,
GitLab, Slack, Stripe or Google key, a JWT, the password in a URL), or by the name it is assigned to
(`DB_PASSWORD=...`, `"api_key": "..."`, Tcl `set ::env(LM_LICENSE_PASSWORD) ...`). An assigned value is
replaced whole, to its closing quote or, unquoted, to the next whitespace: a value cut at its first
unusual character (`Tr0ub4dor&3...`) is a value left in the corpus. Code that merely names a credential
(`token = tokens[i]`, `password = getpass.getpass()`, `assign secret_key = round_key_reg;`) is kept.
"""

import hashlib
import hmac
import math
import re
from collections.abc import Callable

# Its end is "no letter or digit next", not \b: `_` is a word character, and a file name such as
# `alice.smith@chipco.com_notes.md` has no word boundary after the address.
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?![A-Za-z0-9])")
# To its END line or, in a truncated copy that has none, to the end of the document: the key's body is
# the secret, and a missing END line must not let it through.
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)", re.S
)
# `scheme://user:PASSWORD@host`: a database or proxy address with its password in it.
URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]+:)([^\s@/]+)(?=@)")
# Published formats, recognised wherever they stand.
TOKEN_FORMATS = {
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    "slack_token": re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}\b"),
    "stripe_key": re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}"),
}

# A name ending in one of these may hold a credential; which ones do is decided by _kind.
_WORDS = (
    r"(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|pass[_-]?phrase"
    r"|token|credentials?|key)"
)
_NAME = r"(?P<name>[A-Za-z0-9_.\-]*?" + _WORDS + r")"
# A quoted value runs to its closing quote (any characters but that quote, escapes allowed) or, left
# open, to the end of the line; an unquoted one runs to the next whitespace.
_QUOTED = r"(?P<q>[\"'])(?P<qv>(?:\\.|(?!(?P=q))[^\\\n])*)(?P<qend>(?P=q)|$)"
_VALUE = r"(?:" + _QUOTED + r"|(?P<uv>[^\s\"'][^\s]*))"
ASSIGNMENTS = {
    # `NAME = v`, `NAME: v`, `NAME => v`, `NAME := v`, `export NAME=v`, `"NAME": v`, `env["NAME"] = v`
    # (Python, shell, YAML, JSON, Perl, make); `==` is a comparison, not an assignment.
    "assigned_secret": re.compile(
        r"(?im)(?P<lead>(?<![A-Za-z0-9])" + _NAME + r"[\"']?\]?[ \t]*(?:=>|:=|\?=|=(?!=)|:(?!:))[ \t]*)" + _VALUE
    ),
    # Tcl `set NAME v`, `set ::env(NAME) v`, `set env(NAME) {v}`, the common form in EDA scripts.
    "assigned_secret_tcl": re.compile(
        r"(?im)(?P<lead>(?<![\w$])set[ \t]+(?:::)?(?:env\()?" + _NAME.replace(r"_.\-", r"_.\-:") + r"\)?[ \t]+)"
        r"(?:\{(?P<bv>[^}\n]*)(?P<bend>\}|$)|" + _VALUE + r")"
    ),
    # csh `setenv NAME v`.
    "assigned_secret_setenv": re.compile(r"(?im)(?P<lead>(?<![\w$])setenv[ \t]+" + _NAME + r"[ \t]+)" + _VALUE),
}

# Shorter values are left: `token = "<s>"`, `password: str`, `key = k` are code, not credentials.
MIN_SECRET_CHARS = 8
_STRONG = re.compile(
    r"(?i)(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|pass[_-]?phrase)$"
)
_TOKEN = re.compile(r"(?i)(?:token|credentials?)$")
# Not a value but a reference to one: $VAR, ${VAR}, $(cmd), $env(VAR), {{ template }}, %(name)s,
# a <placeholder> (curation's own <secret> included, so a curated corpus curated again is left as it is).
_REFERENCE = re.compile(r"\$\{?[A-Za-z_][\w.:]*\}?|\$\(.*\)|\$env\(\w+\)|\{\{.*\}\}|%\(\w+\)s|<[^<>\s]*>")
# Unquoted code: a structure, a call or a subscript, an attribute path, a variable name.
_CODE = re.compile(
    r"[(\[{].*"  # (, [ or { first: a structure, a Tcl command substitution
    r"|[A-Za-z_][\w.]*[(\[].*"  # getpass.getpass(), os.environ["X"], tokens[i]
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"  # args.password, settings.SECRET_KEY
    r"|_*[a-z]+(?:_[a-z]+)+|_*[A-Z]+(?:_[A-Z]+)+"  # round_key_reg, DEFAULT_PASSWORD
    r"|undefined|required|optional|nullable|string|boolean|integer"
)
# What a tokenizer calls a token: <|endoftext|>, [PAD], or a plain word (`chat_template_token = "assistant"`).
_TOKENIZER_TOKEN = re.compile(r"[<\[].*[>\]]|[a-z_.\-]+")


def _kind(name: str) -> str | None:
    """How strongly a name says its value is a credential: "strong" (a password, a secret, an API key,
    an UPPER_CASE `*_KEY`), "token" (token and credentials also name code), "weak" (a lower-case `*_key`,
    a credential only when its value looks like one), or None (`key` alone: a dict key, a loop variable)."""
    last = re.split(r"[.:]", name)[-1]
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


def is_secret(name: str, value: str, quoted: bool) -> bool:
    """Whether `value`, assigned to `name`, is to be redacted."""
    kind = _kind(name)
    bare = value if quoted else value.rstrip(";,")  # a statement's end is not the value's
    if kind is None or len(bare) < MIN_SECRET_CHARS or _REFERENCE.fullmatch(bare):
        return False
    if not quoted and _CODE.fullmatch(bare):
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


def _assignment_replacer(mark: Mark, counter: list[int]) -> Callable[[re.Match], str]:
    def replace(m: re.Match) -> str:
        groups = m.groupdict()
        if groups.get("bv") is not None:  # Tcl {braced}
            value, opening, closing = groups["bv"], "{", groups["bend"]
        elif m.group("q"):
            value, opening, closing = m.group("qv"), m.group("q"), m.group("qend")
        else:
            value, opening, closing = m.group("uv"), "", ""
        if not is_secret(m.group("name"), value, bool(opening)):
            return m.group(0)
        counter[0] += 1
        return f"{m.group('lead')}{opening}{mark('secret', value)}{closing}"

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
        text = pattern.sub(_assignment_replacer(mark, counter), text)
        if counter[0]:
            counts[name] = counter[0]
    for name, pattern in TOKEN_FORMATS.items():
        run(name, pattern, lambda m: mark("secret", m.group(0)))
    return text, counts


def redact_path(path: str, key: bytes) -> tuple[str, dict[str, int]]:
    """A file's path redacted like its text (`docs/alice.smith@chipco.com_notes.md`), each placeholder
    tagged with a keyed hash of what it replaces: two files named after two people stay two paths (a
    path is the document's id in deduplication), and without the key, never written, the tag says
    nothing about the address."""

    def tagged(placeholder: str, original: str) -> str:
        return f"<{placeholder}-{hmac.new(key, original.encode(), hashlib.sha256).hexdigest()[:8]}>"

    return redact(path, tagged)
