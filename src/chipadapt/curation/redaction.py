"""Redaction of e-mail addresses and credentials, in a document's text and in its path.

A credential is recognised three ways: by a published format (a private key block or its base64, an AWS, GitHub,
GitLab, Slack, Stripe, Google, Hugging Face or OpenAI key, a JWT, a Slack webhook, the password in a URL, an
Ansible vault, an AWS secret key beside its id or random enough alone, a Docker config in base64), by its
context (`Authorization: Bearer ...`, .netrc, `mysql -p...`, `sshpass -p`, `--password ...`, a connection
string's `Password=`, a login's second argument, `the password is ...`, a Docker config's `auth`, every value of
a Kubernetes Secret's `data:` and `stringData:`, as YAML's indented map, a flow map, JSON or JSON escaped in a
string, a certificate too), or by the name it is assigned to (`DB_PASSWORD=...`, `"api_key": "..."`, Tcl
`set ::env(LM_LICENSE_PASSWORD) ...`, `ENV`, `#define`, `<password>`, `<add key="ApiKey" value=...>`,
`set_password("...")`, a YAML block, list or anchor). The rule is one: a name that says credential, and a value
that looks like one. An assigned value is replaced whole, to its
closing quote or, unquoted, to the next whitespace (at the start of a YAML, ini or .env line, to the line's end
less a comment): a value cut at its first unusual character (`Tr0ub4dor&3...`) is a value left in the corpus.
Code that merely names a credential (`token = tokens[i]`, `connect(password=password)`, `assign secret_key =
round_key_reg;`, `AES_KEY = 128'h2b7e...;`), a path (`PWD=/home/alice`), a test's result or a pulse width under
the short names pass, pw, pwd (`PASS: test_uart_1`, `PW: 100MHz`) and a message about a password
(`forgot_password: Forgot your password?`) are kept, and so is the `;` or `)` that ends a statement, a YAML
anchor on a value (`password: &pw <secret>`) and an alias to an anchor its `---` document defines (`password: *pw`).
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
    DOCKER_AUTH,
    EMAIL,
    ESCAPED_LIST,
    FORMS,
    K8S_SECRET_FLOW,
    K8S_SECRET_MAP,
    PRIVATE_KEY,
    PRIVATE_KEY_BASE64,
    TOKEN_FORMATS,
    URL_PASSWORD,
    YAML_ANCHOR,
    YAML_BLOCK,
    YAML_FLOW_LIST,
    YAML_LIST,
)
from chipadapt.curation.redaction_needs import NEEDS
from chipadapt.curation.redaction_secret import secret_flow_replacer, secret_map_replacer
from chipadapt.curation.redaction_value import (
    UPPER_SNAKE,
    anchor_names,
    base64_private_key,
    credential_kind,
    is_base64_login,
    is_code_variable,
    is_secret,
    line_value,
    says_password,
    split_tail,
)
from chipadapt.curation.redaction_yaml import (
    Mark,
    anchor_replacer,
    block_replacer,
    escaped_list_replacer,
    flow_list_replacer,
    list_replacer,
)

# A word in a sentence after `password`: 6 or more characters with a letter and a digit (`hunter22`); a
# word of letters (`the password is wrong`) is English.
_SENTENCE_PASSWORD = re.compile(r"(?=.*[A-Za-z])(?=.*\d)\S{6,64}")
# An ini or TOML `[section]` header: a name at the line's start, plain, dotted or quoted (`[db]`,
# `[tool.ruff]`, `[remote "origin"]`); not a footnote `[1]` nor an indented list `  [a]`. Under one, an
# unindented `NAME = value` is config, not code, unless the document is code (a `def`, a `;` ending a line).
_INI_SECTION = re.compile(r"(?m)^\[(?:[A-Za-z_][\w\-]*(?:\.[\w\-]+)*(?:[ \t]+\"[^\"\n]*\")?|\"[^\"\n]+\")\][ \t]*\r?$")
_CODE_SIGNAL = re.compile(
    r"(?m)^[ \t]*+(?:def|class|import|from|module|assign|always|function|proc|return|if|for|while)\b|[;{][ \t]*\r?$"
)
# What _CODE_SIGNAL needs: searched for first, a text of blanks is not tried at each of its positions.
_CODE_NEEDS = (";", "{", "def", "class", "import", "from", "module", "assign", "always", "function", "proc")
_CODE_NEEDS += ("return", "if", "for", "while")
# Where pass, pw and pwd are code, never a password (see _SHORT_NAME in redaction_value.py): a Verilog statement,
# a Tcl `set`, a shell `export` or csh `setenv`.
_SHORT_NAME_CODE = re.compile(
    r"^[ \t]*(?:assign|export|set|setenv|localparam|parameter|wire|logic|reg)\b|<=|;[ \t]*\r?$"
)


def _plain(placeholder: str, _original: str) -> str:
    return f"<{placeholder}>"


def _line_around(m: re.Match) -> str:
    """The line a match is on, at most 200 characters either side of it (a megabyte-long line is not
    scanned again for each match in it)."""
    text, start, end = m.string, m.start(), m.end()
    lo, hi = max(0, start - 200), min(len(text), end + 200)
    before = text.rfind("\n", lo, start)
    after = text.find("\n", end, hi)
    return text[before + 1 if before >= 0 else lo : after if after >= 0 else hi]


# An unquoted call argument that is a name: in code any identifier, elsewhere a word with an index after it
# (`password(clk1)`, `gen_passphrase(rng0)`); `password(hunter2x)`, a digit inside the word, is a value.
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_INDEXED_WORD = re.compile(r"[A-Za-z_]+\d*")
# `password = args.pw2`, `db_cfg.pw2`: an attribute, its last part a word with at most an index; not
# `my_db.pass_01`, a value's words joined by `_` and `.`.
_ATTRIBUTE = re.compile(r"[A-Za-z_]\w*\.[A-Za-z]+\d*[ \t]*(?:[;#]|\r?$)")

# A YAML alias after `:` (`password: *db_pw`, `{password: *db_pw}`): where the text defines its anchor
# (`&db_pw`) it names that anchor's value (judged where the anchor is), and stays as it is.
_YAML_ALIAS_VALUE = re.compile(r"\*(?P<alias>[^\s,\[\]{}]+)[\]}]*[ \t]*(?:#.*)?\r?")

# Forms in which pass, pw and pwd are a Tcl or csh variable, never a password (see _SHORT_NAME).
_SHORT_NAME_NEVER = {"assigned_secret_tcl", "assigned_secret_setenv"}
# The forms that are a statement assigning a value to a name (`assign secret = key_r1;`, `char *password =
# pw_1;`, `#define`): in code an unquoted short identifier there is a variable (redaction_value.is_code_variable).
# Not a command line's password (`--password`, `mysql -p`, `sshpass -p`, `docker login -p`), .netrc's, a
# sentence's, a flow map's entry (`{user: bob, password: root_12}`) nor a URL's query (`?password=ab_c12&u=x`):
# a password. Nor Tcl's `set`, csh's `setenv` or a Dockerfile's `ENV`, whose unquoted word is a string literal
# (a variable is `$key_r1`).
_STATEMENTS = {"assigned_secret_line", "assigned_secret", "assigned_secret_define"}
# The line before a name inside a flow map or an object (`creds: {user: bob, `): a `{` not closed after it, but
# SystemVerilog's assignment pattern `'{` (`k = '{secret: s_r1, valid: 1'b1};`), which is code.
_IN_FLOW_MAP = re.compile(r"(?<!')\{[^{}]*$")


def _assignment_replacer(
    mark: Mark,
    counter: list[int],
    ini_start: int | None,
    form: str,
    code: bool,
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
        value_text = groups.get("lv") or groups.get("uv") or groups.get("pv")
        alias = _YAML_ALIAS_VALUE.fullmatch(value_text) if value_text else None
        if (
            alias
            and m.group("lead").rstrip().endswith(":")
            and alias.group("alias") in anchor_names(m.string, m.start())
        ):
            return m.group(0)
        if groups.get("call") is not None and m.group("q") and UPPER_SNAKE.fullmatch(m.group("qv")):
            return m.group(0)  # `use_token("GITHUB_TOKEN")` passes a secret's name
        if form == "call_password_unquoted" and (_IDENTIFIER if code else _INDEXED_WORD).fullmatch(m.group("uv")):
            return m.group(0)  # `password(clk1)`, `reset_password(buf2)`: a signal, a variable
        after = ""
        # The line before the name, 200 characters at most (a long line is not read again for each match): a
        # flow map's `{`, a URL query's `?` or `&`, a command line's option (`--password=my_pw1`).
        window = m.string[max(0, m.start() - 200) : m.start()]
        line_before = window[window.rfind("\n") + 1 :]
        statement = (
            code
            and form in _STATEMENTS
            and not name.startswith("-")
            and line_before[-1:] not in ("?", "&")
            and not _IN_FLOW_MAP.search(line_before)
        )
        if groups.get("lv") is not None:  # a line's value, to its end
            # YAML `NAME: v` and unspaced `NAME=v` (.env, .properties, shell) are config; spaced `NAME = v`
            # is config on an unindented line under an ini section or, after a name that says password, in a
            # document with no sign of code (a .properties file, a README's `password = my_db.pass_01`), and
            # code (`password = default_password`, `secret_key = round_key_reg`) elsewhere. Config still
            # keeps a value that ends in the name's own word (`password = args.password`).
            ini = ini_start is not None and m.start() > ini_start and m.group("lead")[:1] not in " \t"
            # ... and there only a value with a digit: `DB_PASSWORD = other_module.value` names a variable.
            # Not an attribute (`password = args.pw2`): code even in a snippet with no other sign of it.
            lv = m.group("lv")
            prose = not code and says_password(name) and bool(re.match(r"\S*\d", lv)) and not _ATTRIBUTE.match(lv)
            config = groups.get("op") == ":" or groups.get("sp") == "" or ini or prose
            config = config and not re.search(r"[,;)]$", lv.rstrip())
            found = line_value(name, lv, config, code=statement and not config)
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
        elif groups.get("ev") is not None:  # escaped JSON's string: its closing quote stays after the match
            value, opening, closing = m.group("ev"), m.group("eq"), ""
        elif groups.get("q"):
            value, opening, closing = m.group("qv"), m.group("q"), m.group("qend")
        else:
            value, after = split_tail(m.group("uv"))
            if m.string[m.start() - 1 : m.start()] in ("?", "&") and "&" in value:  # a URL's query: to its `&`
                value, after = value[: value.index("&")], value[value.index("&") :] + after
            opening, closing = "", ""
        if groups.get("lv") is None and groups.get("xv") is None and not is_secret(name, value, bool(opening)):
            return m.group(0)
        if groups.get("uv") is not None and statement and is_code_variable(value):
            return m.group(0)  # `assign secret = key_r1;`, `char *password = pw_1;`: a variable
        counter[0] += 1
        return f"{m.group('lead')}{opening}{mark('secret', value)}{closing}{after}"

    return replace


def _base64_private_key(m: re.Match, mark: Mark) -> str | None:
    """A private key in base64 replaced, the lines after a wrapped one's end kept; None where it is none."""
    end = base64_private_key(m.group(0))
    return mark("secret", m.group(0)[:end]) + m.group(0)[end:] if end else None


def redact(text: str, mark: Mark = _plain) -> tuple[str, dict[str, int]]:
    """`text` with e-mail addresses and credentials replaced (by <email>, <secret>), and how many of each."""
    counts: dict[str, int] = {}
    lowered = ["", ""]  # the text last lower-cased, and its lower case
    found: dict[tuple[str, ...], bool] = {}  # in that text: many patterns need the same words

    def may_match(pattern: re.Pattern) -> bool:
        """Whether the text holds what `pattern` needs (redaction_needs.NEEDS); asked of the text as it is now,
        after the replacements before it."""
        needs = NEEDS.get(pattern)
        if needs is None or not text.isascii():
            return True
        if lowered[0] is not text:
            lowered[:] = [text, text.lower()]
            found.clear()
        if needs not in found:
            found[needs] = any(word in lowered[1] for word in needs)
        return found[needs]

    def run(name: str, pattern: re.Pattern, replacement: Callable[[re.Match], str | tuple[str, int] | None]) -> None:
        """Each match replaced by `replacement`'s text, or kept where that is None, and counted if replaced
        (as many times as it says where it replaces several values, a list's items)."""
        nonlocal text
        if not may_match(pattern):
            return
        replaced = 0

        def counted(m: re.Match) -> str:
            nonlocal replaced
            out = replacement(m)
            if out is None:
                return m.group(0)
            out, n = out if isinstance(out, tuple) else (out, 1)
            replaced += n
            return out

        text = pattern.sub(counted, text)
        if replaced:
            counts[name] = counts.get(name, 0) + replaced

    run("private_key", PRIVATE_KEY, lambda m: mark("secret", m.group(0)))
    run("private_key", PRIVATE_KEY_BASE64, lambda m: _base64_private_key(m, mark))
    run("url_password", URL_PASSWORD, lambda m: m.group(1) + mark("secret", m.group(2)))
    run("email", EMAIL, lambda m: mark("email", m.group(0)))
    if "$ANSIBLE_VAULT;" in text:
        run("ansible_vault", ANSIBLE_VAULT, lambda m: m.group("ind") + mark("secret", m.group(0).strip()))
    # A Secret's map before the forms that judge a value by its key: there every value is a secret.
    run("k8s_secret_data", K8S_SECRET_MAP, secret_map_replacer(mark, text))
    run("k8s_secret_data", K8S_SECRET_FLOW, secret_flow_replacer(mark, text))
    run("yaml_block_secret", YAML_BLOCK, block_replacer(mark))
    run("yaml_anchor_secret", YAML_ANCHOR, anchor_replacer(mark, text))
    run("yaml_list_secret", YAML_LIST, list_replacer(mark))
    run("yaml_list_secret", YAML_FLOW_LIST, flow_list_replacer(mark))
    run("assigned_secret_escaped", ESCAPED_LIST, escaped_list_replacer(mark))
    code = any(word in text for word in _CODE_NEEDS) and bool(_CODE_SIGNAL.search(text))
    # Assignments before formats: `set api_key "sk_live_..."` is counted as what it is, an assignment.
    for name, pattern in {**ASSIGNMENTS, **FORMS}.items():
        if not may_match(pattern):
            continue
        counter = [0]
        section = None if code or "[" not in text else _INI_SECTION.search(text)  # again: earlier replacements moved it
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
    run(
        "docker_auth",
        DOCKER_AUTH,
        lambda m: m.group(1) + mark("secret", m.group(2)) if is_base64_login(m.group(2)) else None,
    )
    for name, pattern in BASIC_AUTH.items():
        run(name, pattern, lambda m: m.group("pre") + mark("secret", m.group("pw")))
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
