"""Whether a value assigned to a name is a credential: the judgement redaction.py applies to every value that
redaction_forms' patterns find (how strongly the name says credential, whether the value looks like one,
or like code, a reference, a path, a message about a password)."""

import base64
import binascii
import bisect
import functools
import math
import re

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
# secret), 4 to 7 letters and digits, both, are one (`password: abc12`), with a password's punctuation too
# (`S3cret!`, `p@ss1`, `pa$$1`, `my_p.1`); not a type (`uint64`, `utf8`, `int_32`), a hash's name (`sha256`,
# `md5`), a version (`v1.2`), a hex number nor a shell expansion inside one (`pw${N}`, `x$(id)1`). A word of
# letters alone (`password: str`) is a type or a word. Not after pass, pw or pwd, which name a test's result and
# a pulse width as often (`PW: 1024x8`).
_PASSWORD_NAME = re.compile(r"(?i)(?:passw(?:or)?d|pass[_-]?phrase|secret)$")
# ... and after an account's `DB_PASS`, `MYSQL_PWD`, `ansible_become_pass` (a .env's `DB_PASS=hunter2`).
_ACCOUNT_PASS = re.compile(r"(?i)(?:pass|pwd|pw)$")
_SHORT_PASSWORD = re.compile(
    r"(?i)(?!(?:u?int|float|bytes|char|utf|ucs|sha|md|crc|aes|rsa|x|v)[_\-.]?\d+$)(?!v\d+(?:\.\d+)+$)(?!0x)"
    r"(?!.*\$[{(])(?=.*[a-z])(?=.*\d)[a-z0-9!@#$%^&*?~+_.]{4,7}"
)
# A process node, a memory standard, a core (`secret: tsmc7`, `sky130`, `gf180mcu`, `ddr4`, `rv32imc`): the
# chips and tools the corpus is about. After the number only a suffix such names have (`sky130A`, `sky130hd`,
# `sg13g2`, `gf180mcuD`, `lpddr5x`, `tsmc65gp`, `tsmc28hpm`, `gf22fdx`, `sky90fd`, `arm926ej`) or a RISC-V ISA's
# letters (`rv32imafc`): `sky130xyz`, `sm1x9k2m4q8` and
# `rv32xyz` are random tokens that begin like one, and a secret's value.
# A value no password is made of only after a name as ambiguous as the value: bare `secret` (a Kubernetes
# object, a flag, as often as a password) and the short pass, pw, pwd (see _SHORT_NAME). After any other name
# what is assigned is its value, a process name or not: `password: sky1234`, `DB_PASS=gf180`,
# `client_secret: sky130xyz`, `db_secret: tsmc7abc`, `api_key: gen2x8f9k3m`.
_TECH_NAME = re.compile(
    r"(?i)(?:tsmc|asap|gf|sky|ihp|sg|ddr|lpddr|gddr|hbm|pcie|usb|rv|cv|avx|sse|arm|sm|gen|ipv|el)\d+"
    r"(?:[a-fx]|hd|hs|ms|ls|lp|hp|ll|hvl|hdll|lpp|lpe|lpu|ulp|ull|gp|hpm|hpcp?|ffcp?|ffp?|fdx|fd|ej(?:-s)?|nm|io"
    r"|ram|g2|mcu[a-d]?)?"
    r"|rv(?:32|64|128)[imafdqlcbjtpvnhkgsuxze]{1,16}"
)
# An API version (`secret: v1alpha1`, `token: k8s1`) is one after any name but a password's own
# (_PASSWORD_ONLY: `password: v1beta1` is a password).
_API_VERSION = re.compile(r"(?i)v\d+(?:alpha|beta)\d*|k8s\w*")
_PASSWORD_ONLY = re.compile(r"(?i)(?:passw(?:or)?d|pass[_-]?phrase|pass|pwd|pw)$")
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


# A quoted value that is an identifier (`PRIMARY_KEY = 'user_id_column'`, `SORT_KEY = "created_at"`): after
# a plain `*_KEY` it names a column or a field; after a password it may well be the password.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)+")
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
# An identifier: in a statement of code a short one with `_` in it names a variable (`key_r1`), not a password.
_WORD = re.compile(r"[A-Za-z_]\w*")
# A YAML anchor (`&db_pw`) where a node may begin: after a line's start, a space, `:`, `-`, `[`, `{` or `,`.
_ANCHOR_NAME = re.compile(r"(?<![^\s:\[{,\-])&([^\s,\[\]{}]+)")
# A name that passes a secret's name on (`use_token("GITHUB_TOKEN2")`), not its value.
UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


@functools.lru_cache(maxsize=4096)  # called for every match, and a document repeats its names
def credential_kind(name: str) -> str | None:
    """How strongly a name says its value is a credential: "strong" (a password, a secret, an API key,
    an UPPER_CASE `*_KEY`), "token" (token and credentials also name code), "weak" (a lower-case `*_key`,
    a credential only when its value looks like one), or None (`key` alone: a dict key, a loop variable)."""
    last = re.split(r"[.:]", name)[-1]
    if _SHORT_NAME.fullmatch(last):
        return "short"  # `PASS=`, `PW=`, `pw:`, `db_pw`: a password only where the value looks random
    if re.fullmatch(
        r"(?i)(?:db|user|admin|root|mysql|sql|ftp|smtp|mail|login|ldap|redis|app|sudo|wifi)_?p(?:ass|w)"
        r"|ansible_(?:become_|ssh_|sudo_|su_)?pass",  # Ansible's inventory variables
        last,
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


def looks_opaque(value: str) -> bool:
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


def says_password(name: str) -> bool:
    return bool(_PASSWORD_NAME.search(re.split(r"[.:]", name)[-1])) and credential_kind(name) == "strong"


def is_secret(name: str, value: str, quoted: bool, config: bool = False) -> bool:
    """Whether `value`, assigned to `name`, is to be redacted. `config`: the assignment is a config file's
    line (YAML `NAME: value`, `.env`/.properties `NAME=value`, ini), where a word with `_` or `.` in it is a
    value, not a variable or an attribute."""
    kind = credential_kind(name)
    bare = value if quoted else split_tail(value)[0]  # a statement's end is not the value's
    if kind is None or _REFERENCE.fullmatch(bare) or _PATH.fullmatch(bare):
        return False
    short_ok = says_password(name) or (kind == "strong" and _ACCOUNT_PASS.search(name))
    if len(bare) < MIN_SECRET_CHARS and not (short_ok and _SHORT_PASSWORD.fullmatch(bare)):
        return False
    if not quoted and _API_VERSION.fullmatch(bare) and not (short_ok and _PASSWORD_ONLY.search(name)):
        return False
    ambiguous = kind == "short" or re.split(r"[.:]", name)[-1].lower() == "secret"
    if not quoted and _TECH_NAME.fullmatch(bare) and ambiguous:
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
        return looks_opaque(bare)
    if kind == "short":
        if any(c.isspace() for c in bare):
            return False
        return (
            not (_IDENTIFIER.fullmatch(bare) or UPPER_SNAKE.fullmatch(bare))
            if quoted
            else bool(_RANDOM_WORD.fullmatch(bare))
        )
    return True


# Words that make a line code, not a phrase: `api_key = None if cfg is None else cfg.key`.
_CODE_WORDS = {"if", "else", "elif", "for", "while", "lambda", "return", "yield", "await", "new", "function"}
_CODE_WORDS |= {"None", "True", "False", "null", "nil", "undefined", "and", "or", "not"}
_PHRASE = re.compile(r"[^\s()\[\]{}<>=|&+*/\\,;\"'`$]+(?:[ \t]+[^\s()\[\]{}<>=|&+*/\\,;\"'`$]+)+")


def is_code_variable(value: str) -> bool:
    """Whether an unquoted value assigned in a statement of code is a variable's name: short, with `_` in it
    (`assign secret = key_r1;`, `char *password = pw_1;`). Only there: a sentence's `the password is my_pw12`,
    `mysql -proot_12`, a flow map's `{password: root_12}` and a URL's `?password=ab_c12` hold a password."""
    bare = split_tail(value)[0]
    return len(bare) < MIN_SECRET_CHARS and "_" in bare and bool(_WORD.fullmatch(bare))


def line_value(name: str, line: str, config: bool = False, code: bool = False) -> tuple[str, str] | None:
    """The value of a line's `NAME: value` to be replaced and what follows it (a comment, an end of
    statement), or None where the line is kept: the value is one word judged like any other, or several
    when the first is a secret or all are a phrase (`correcthorse battery staple`), not code. `code`: the
    line is a statement of code, where a first word that is_code_variable is a variable."""
    value = re.split(r"[ \t]#", line, maxsplit=1)[0].rstrip()
    rest = line[len(value) :]
    if not any(c.isspace() for c in value):
        core, tail = split_tail(value)
        secret = is_secret(name, value, False, config) and not (code and is_code_variable(value))
        return (core, tail + rest) if secret else None
    first = value.split()[0]
    if (is_secret(name, first, False, config) and not (code and is_code_variable(first))) or (
        _PHRASE.fullmatch(value) and not _CODE_WORDS & set(value.split()) and is_secret(name, value, True)
    ):
        return value, rest
    return None


# Where a YAML document begins after the first: a `---` line (`--- !tag` too). An anchor is defined for its own
# document alone: `*pw` in the next is no alias of it.
_DOCUMENT_START = re.compile(r"(?m)^---(?=[ \t]|\r?$)")


@functools.lru_cache(maxsize=2)  # asked for at each alias of a text, and one text at a time
def _document_anchors(text: str) -> tuple[list[int], list[frozenset[str]]]:
    """Where each `---` document of `text` begins, and the anchors it defines."""
    starts = [0] + [m.start() for m in _DOCUMENT_START.finditer(text)]
    ends = starts[1:] + [len(text)]
    return starts, [frozenset(_ANCHOR_NAME.findall(text, a, b)) for a, b in zip(starts, ends, strict=True)]


def anchor_names(text: str, position: int) -> frozenset[str]:
    """The YAML anchors that the `---` document of `text` holding `position` defines: `*name` there is an alias
    only where `&name` is one of them, and elsewhere (`password: *Hx92kq!Lm7`) a password that begins with `*`."""
    starts, names = _document_anchors(text)
    return names[bisect.bisect_right(starts, position) - 1]


def is_reference(value: str) -> bool:
    """`$DB_PASSWORD`, `{{ .Values.password | b64enc }}`, `<secret>`: a reference to a value, not one."""
    return bool(_REFERENCE.fullmatch(value))


def is_base64_login(token: str) -> bool:
    """Whether `token` is base64 of `user:password` (a Docker config's `auth`, HTTP basic auth): printable text
    with a `:` between two non-empty parts. `true`, `none` and a hex hash decode to bytes, not text."""
    try:
        body = token.rstrip("=")
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        text = raw.decode("ascii")
    except (binascii.Error, ValueError):
        return False
    user, colon, password = text.partition(":")
    return bool(colon and user and password) and text.isprintable()


_PRIVATE_KEY_HEADER = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")
# Base64 wrapped by `base64` (76 characters a line), openssl or PEM (64) is no wider; a key on one line is.
_MAX_WRAP = 120


def base64_private_key(run: str) -> int:
    """How much of a run of base64 that begins with `-----BEGIN` encoded is a private key (0: none, a
    certificate). Its first 128 characters decode to the header; wrapped, its lines are as long as its first
    but the last, and a line after a shorter or padded one (`done`) is no part of it."""
    lines = run.split("\n")
    body = [lines[0].rstrip("\r")]
    width = end = len(body[0])
    start = len(lines[0]) + 1  # where the next line starts
    for line in lines[1:] if width <= _MAX_WRAP else ():
        if len(body[-1].rstrip("=")) != width:
            break  # the line before was the last: shorter than the width, or padded
        core = line.strip()
        if len(core) > width:
            break
        body.append(core)
        end = start + len(line.rstrip("\r"))
        start += len(line) + 1
    head = "".join(body)[:128]
    try:
        raw = base64.b64decode(head[: len(head) - len(head) % 4], validate=True)
    except (binascii.Error, ValueError):
        return 0
    return end if _PRIVATE_KEY_HEADER.match(raw) else 0
