"""The forms in which redaction.py finds credentials: published formats, contexts, assignments (`NAME = value`
in a dozen languages), and beyond one line's assignment a bare AWS secret access key, a YAML block or
anchored value, an Ansible vault, a .NET `<add key=... value=...>`, a password in a connection string, in a
call or in a sentence. Patterns only: redaction.py judges each value they find, redaction_needs says what a
text must hold for each to be tried, redaction_escaped reads JSON escaped in a string. Every pattern runs in
time linear in the text: a corpus holds megabyte-long lines of base64.
"""

import re

from chipadapt.curation.redaction_escaped import ESCAPED_LIST_ITEM, ESCAPED_QUOTE, ESCAPED_VALUE

# A name ending in one of these may hold a credential; which ones do is decided by
# redaction_value.credential_kind.
WORDS = (
    r"(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|pass[_-]?phrase"
    r"|token|credentials?|key|pass|pwd|pw)"
)
# Bounded: unbounded, every `_`, `.` or `-` in a long run began a match that scanned the run to its end, so
# a 40 KB line of `a_a_...` took a minute and a 1 MB base64 blob hours. No credential name is longer.
NAME = r"(?P<name>[A-Za-z0-9_.\-]{0,64}?" + WORDS + r")"
# A quoted value runs to its closing quote (any characters but that quote, escapes allowed) or, left open,
# to the end of the line. Python's `"""` is tried before `"`, which would read it as an empty string, and
# runs across lines (`password = """S3cret\npass phrase"""`) to a closing quote within 4 KB; one not
# closed within them is redacted to its line's end, not to the end of a megabyte-long document.
_QUOTED_LINE = r"(?:\\.|(?!(?P=q))[^\\\n])*"
# Lazy and bounded: a start with no closing quote within 4 KB costs 4 KB, and starts are 4 KB apart.
_QUOTED_SPAN = r"(?:\\.|(?!(?P=q))[^\\]){0,4096}?(?=(?P=q))"
QUOTED = (
    r"(?P<q>(?P<tq>\"\"\"|''')|[\"'])"
    r"(?P<qv>(?(tq)(?:" + _QUOTED_SPAN + "|" + _QUOTED_LINE + ")|" + _QUOTED_LINE + r"))(?P<qend>(?P=q)|$)"
)

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
# The same block in base64, as a Kubernetes Secret in JSON holds it (`"tls.key": "LS0tLS1CRUdJTi..."`, what
# `-----BEGIN` encodes to), on one line or wrapped over lines of base64 alone (redaction_value.base64_private_key
# tells where a wrapped one ends, and a certificate, whose header is no private key's, from one).
PRIVATE_KEY_BASE64 = re.compile(
    r"(?m)(?<![A-Za-z0-9+/])LS0tLS1CRUdJTi[A-Za-z0-9+/]{22,}(?:\r?\n[ \t]*[A-Za-z0-9+/]+={0,2}(?=\r?$))*={0,2}"
)
# `scheme://user:PASSWORD@host`: a database or proxy address with its password in it; the user may be
# empty (`redis://:PASSWORD@cache`). Starts only where a run of scheme characters starts (linear time).
URL_PASSWORD = re.compile(r"((?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)(?=@)")
# Published formats, recognised wherever they stand.
TOKEN_FORMATS = {
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    "slack_token": re.compile(r"\b(?:xox[abpors]|xapp)-[A-Za-z0-9-]{10,}\b"),
    "stripe_key": re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    # OpenAI and Anthropic (`sk-`, `sk-proj-`, `sk-ant-`); a digit in it tells a key from a CSS class name.
    "openai_key": re.compile(r"\bsk-(?=[A-Za-z0-9_\-]{20})(?=[A-Za-z_\-]{0,100}\d)[A-Za-z0-9_\-]+"),
    # A Docker config JSON in base64, wherever it is written: `{"auths":` encodes to `eyJhdXRocyI6`.
    "docker_config": re.compile(r"\beyJhdXRocyI6[A-Za-z0-9+/]*={0,2}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}"),
}
# Each a credential after a context that names none: (prefix kept, secret replaced).
CONTEXT_FORMATS = {
    "slack_webhook": re.compile(r"(\bhooks\.slack\.com/services/)([A-Za-z0-9_\-/]+)"),
    # A Kubernetes image pull secret's Docker config, base64 under its key (`.dockerconfigjson: eyJ...`,
    # `--from-literal=.dockercfg=...`): it holds every registry's login.
    "docker_config": re.compile(
        # Not a path (`--from-file=.dockerconfigjson=/home/alice/.docker/config.json`), nor base64's start
        # cut at a character base64 has not (`=config/docker.json`).
        r"((?<![\w.\-])[\"']?\.docker(?:configjson|cfg)[\"']?[ \t]*[:=][ \t]*[\"']?)"
        r"((?!/)[A-Za-z0-9+/]{8,}={0,2})(?![\w+/=\-.])"
    ),
    # `Authorization: Bearer ...` in a header, a curl `-H`, a JSON or Python dict.
    "authorization": re.compile(
        r"(?i)(\b(?:proxy-)?authorization[\"']?[ \t]*[:=,][ \t]*[\"']?(?:bearer|basic|token)[ \t]+)"
        r"((?=[A-Za-z0-9._~+/\-]*[0-9=+/])[A-Za-z0-9._~+/\-]{8,}=*)"
    ),
}

# `user:PASSWORD` where the context says it is one: curl's `-u`, `-U`, `--user`, `--proxy-user`, in the same
# command (not past a `;`, `|`, `&&` or a background `&`: `curl https://x -o a; sort -u a:b` is sort's).
# Elsewhere `--user` may be docker's `uid:gid` (`--user 1000:1000`, `--user app:app`): a password there only
# where it has a letter and a digit. The user may be a reference (`-u "$CI_USER:S3cret"`); a password that is
# one (`-u $USER:$TOKEN`) is left, and so is every other `a:b` (RTL `[7:0]`, `module:port`, `time: 10ns`).
# A quoted pair is redacted to its closing quote (`-u 'admin:S3cret Pass9'`). Every run is bounded: from each
# `--user=a:` of a long run of them an unbounded value scanned the run to its end (quadratic time).
_AUTH_USER = r"(?:\$\{\w{1,64}\}|\$\w{1,64}|[^\s:\"'@$]{0,100})"
_AUTH_PASSWORD = (
    r"(?(aq)(?![$<{])[^\n\"']{1,200}(?=(?P=aq))"
    r"|[^\s\"'@$<{][^\s\"']{0,200}?(?=[;,]?(?:[\s\"']|\Z)))"
)
BASIC_AUTH = {
    "basic_auth_curl": re.compile(
        r"(?P<pre>\bcurl\b(?:[^\n;|&]|&(?![&\s])){0,300}?[ \t](?:-[uU][ \t]*|--(?:proxy-)?user(?:[ \t]+|=))"
        r"(?P<aq>[\"'])?" + _AUTH_USER + ":)(?P<pw>" + _AUTH_PASSWORD + ")"
    ),
    "basic_auth_user": re.compile(
        r"(?P<pre>(?<![\w-])--(?:proxy-)?user(?:[ \t]+|=)(?P<aq>[\"'])?" + _AUTH_USER + ":)"
        r"(?P<pw>(?=[^\s\"']{0,200}?[A-Za-z])(?=[^\s\"']{0,200}?\d)" + _AUTH_PASSWORD + ")"
    ),
}
# `aws: ...`, `aws_secret: ...`, `AWS_SECRET_ACCESS_KEY: ...`: base64 of 40 to 44 characters (a secret access
# key, or a key as long) under a name that says AWS and nothing more, or AWS's secret (not `aws_sha256`,
# `aws-fpga`: a checksum, a project). redaction_aws.is_named_aws_secret judges it.
AWS_NAMED = re.compile(
    r"(?i)((?<![\w.\-])aws(?:[_\-]?secret[\w\-]{0,24})?[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"([A-Za-z0-9/+]{40,44}={0,2})(?![A-Za-z0-9/+=])"
)

# An unquoted value runs to the next whitespace.
_VALUE = r"(?:" + QUOTED + r"|(?P<uv>[^\s\"'][^\s]*))"
# Within a line (a call's keyword argument, a minified object) an unquoted value also ends at `,` or `;`:
# `connect(user=u,password=pw,host=h)` and `{password:e.password,user:e.user}` are code to the next `,`.
_VALUE_IN_LINE = r"(?:" + QUOTED + r"|(?P<uv>[^\s\"',;][^\s,;]*))"
ASSIGNMENTS = {
    # At the start of a line (YAML, ini, .env, Dockerfile `ENV NAME value`), an unquoted value runs to the end
    # of the line, less a ` #` comment: `password: correcthorse battery staple` is one value. A YAML anchor
    # (`password: &pw hunter2`) stays with the name.
    "assigned_secret_line": re.compile(
        r"(?im)^(?P<lead>[ \t]*+(?:export[ \t]+|-[ \t]+)?" + NAME + r"(?P<sp>[ \t]*)(?P<op>=(?!=)|:(?!:))[ \t]*"
        r"(?:&[^\s]+[ \t]+)?)(?P<lv>[^\s\"'][^\n]*)"
    ),
    "assigned_secret_env": re.compile(r"(?m)^(?P<lead>[ \t]*ENV[ \t]+(?i:" + NAME + r")[ \t]+)(?P<lv>[^\s\"'=][^\n]*)"),
    # `NAME = v`, `NAME: v`, `NAME => v`, `NAME := v`, `export NAME=v`, `"NAME": v`, `env["NAME"] = v`
    # (Python, shell, YAML, JSON, Perl, make); `==` is a comparison, not an assignment.
    "assigned_secret": re.compile(
        # The lookahead (possessive: one scan) finds a name's run followed by an operator before the slower
        # search for a credential word in it: five times faster on text full of `_` and `-`.
        r"(?im)(?P<lead>(?<![A-Za-z0-9])(?=[A-Za-z0-9_.\-]{1,90}+[\"']?\]?[ \t]*[=:?])"
        + NAME
        + r"[\"']?\]?[ \t]*(?:=>|:=|\?=|=(?!=)|:(?!:)(?:[ \t]*&[^\s,;]+(?=[ \t]))?)[ \t]*)"
        + _VALUE_IN_LINE
    ),
    # `\"NAME\": \"v\"` in JSON escaped in a JSON string, at any depth (`\\\"NAME\\\": ...` in a string of
    # that JSON: kubectl's last-applied-configuration in an annotation): a quote is a run of backslashes and `"`,
    # the same run around the name and the value, which runs to the quote that closes it (redaction_escaped).
    # Begins with a backslash, a literal: the search skips the text between them at once. A run is read from
    # its first backslash only (the lookbehind): from each of a long run's, the run was read again to its end.
    "assigned_secret_escaped": re.compile(
        r"(?i)(?P<lead>"
        + ESCAPED_QUOTE
        + NAME
        + r"(?P=eq)[ \t]*:[ \t]*)(?P=eq)(?P<ev>"
        + ESCAPED_VALUE
        + r")(?=(?P=eq))"
    ),
    # Tcl `set NAME v`, `set ::env(NAME) v`, `set env(NAME) {v}`, the common form in EDA scripts.
    "assigned_secret_tcl": re.compile(
        r"(?im)(?P<lead>(?<![\w$])set[ \t]+(?:::)?(?:env\()?" + NAME.replace(r"_.\-", r"_.\-:") + r"\)?[ \t]+)"
        r"(?:\{(?P<bv>[^}\n]*)(?P<bend>\}|$)|" + _VALUE + r")"
    ),
    # csh `setenv NAME v`.
    "assigned_secret_setenv": re.compile(r"(?im)(?P<lead>(?<![\w$])setenv[ \t]+" + NAME + r"[ \t]+)" + _VALUE),
    # C `#define API_KEY "..."`.
    "assigned_secret_define": re.compile(r"(?im)(?P<lead>^[ \t]*#[ \t]*define[ \t]+" + NAME + r"[ \t]+)" + _VALUE),
    # XML `<password>...</password>`.
    "assigned_secret_xml": re.compile(r"(?i)(?P<lead><" + NAME + r">)(?P<xv>[^<\n]+)(?=</(?P=name)>)"),
    # .netrc `machine HOST login USER password PASSWORD`.
    "netrc_password": re.compile(
        r"(?P<lead>\bmachine\s+\S+(?:\s+(?:login|account)\s+\S+)*\s+(?P<name>password)\s+)" + _VALUE
    ),
    # Command lines: `--password VALUE` (the `=` form is an assignment), `mysql -pVALUE`, `sshpass -p VALUE`.
    # `-p` is a password only after these two: elsewhere it is a port, a path, a parent flag.
    "command_line_password": re.compile(
        r"(?i)(?P<lead>(?<![\w-])--" + NAME.replace("{0,64}?", "{0,40}?") + r"[ \t]+)(?!-)" + _VALUE
    ),
    "mysql_password": re.compile(
        r"(?P<lead>\bmysql(?:admin|dump|import|show|check)?\b[^\n]{0,300}?[ \t]-p)(?P<name>)" + _VALUE
    ),
    "sshpass_password": re.compile(r"(?P<lead>\bsshpass\b[^\n]{0,300}?[ \t]-p[ \t]*)(?P<name>)" + _VALUE),
    # `docker login -u alice -p S3cret` (podman, helm registry, buildah alike).
    "registry_login_password": re.compile(
        r"(?P<lead>\b(?:docker|podman|buildah|helm[ \t]+registry)[ \t]+login\b[^\n;|&]{0,300}?[ \t]-p[ \t]+)(?P<name>)"
        + _VALUE
    ),
}

# A Docker config's `"auth": "dXNlcjpwYXNz"`: base64 of `user:password` (redaction_value.is_base64_login
# judges it), in JSON or YAML. Whole: not cut at a character base64 has not (`dXNlcjpwYXNz_d29yZA==` is
# no login, and its first part alone would be replaced as one).
DOCKER_AUTH = re.compile(
    r"(?i)((?<![\w.\-])[\"']?auth[\"']?[ \t]*[:=][ \t]*[\"']?)([A-Za-z0-9+/]{4,}={0,2})(?![\w+/=\-.])"
)
# A Kubernetes Secret's `data:` (base64) or `stringData:` map: every entry's value is a secret, whatever its
# key is named (`username`, `.dockerconfigjson`, `tls.key`). The entries are the lines below it, more
# indented (blank lines among them). redaction_secret.secret_map_replacer replaces each value; `data:` only in
# a YAML mapping whose `kind` is Secret (a ConfigMap's `data:` is config), `stringData:` (a Secret's only)
# anywhere.
K8S_SECRET_MAP = re.compile(
    r"(?m)^(?P<lead>(?P<ind>[ \t]*)(?P<field>data|stringData):[ \t]*(?:#[^\n]*)?\r?\n)"
    r"(?P<entries>(?:(?P=ind)[ \t]+[^\n]*(?:\n|\Z)|[ \t]*\r?\n)*)"
)
K8S_SECRET_KIND = re.compile(r"(?m)^[ \t]*(?:-[ \t]+)?kind:[ \t]*[\"']?Secret[\"']?[ \t]*(?:#[^\n]*)?\r?$")
# The same map as a flow map or JSON (`data: {password: UzNjcmV0}`, `"data": {"tls.key": "LS0t..."}`), on one
# line or many, its `{` on the key's line or the next, or as JSON escaped in a JSON string (`eq`: kubectl's
# `last-applied-configuration`, `{\"data\":{\"password\":\"UzNj...\"},\"kind\":\"Secret\"}`, escaped again at
# any depth: `\\\"data\\\"`, an odd run of backslashes), and a `kind` inside braces (`{"kind": "Secret", ...}`)
# that says whose it is (redaction_secret.secret_flow_replacer).
# A string in an entry holds what it will (`"config.json": "{\"a\": 1}"`), and so does a Helm template
# (`{{ .Values.pw | b64enc }}`); another `{` makes the map none. A string runs to its close or the line's end,
# and no part of the entries is read twice (possessive): linear time.
K8S_SECRET_FLOW = re.compile(
    r"(?P<lead>(?<![\w\"'.\-])(?:(?<!\\)(?P<eq>(?:\\\\)*\\\")|(?P<q>[\"']?))(?P<field>data|stringData)"
    r"(?(eq)(?P=eq)|(?P=q))"
    r"[ \t]*:[ \t]*(?:\r?\n[ \t]*)?\{)"
    r"(?P<entries>(?(eq)[^{}]*|(?:\"(?:[^\"\\\n]|\\.)*+\"?|'[^'\n]*'|\{\{[^{}\n]*\}\}|[^{}])*+))(?=\})"
)
# `kind: Secret` quoted alike on both sides or on neither (`"kind: Secret"` is a string's text, no key), the
# quote `\"` in escaped JSON (`\\\"` escaped twice).
K8S_SECRET_KIND_FLOW = re.compile(
    r"(?<![\w\"'.\-])(?:(?<!\\)(?P<q>\\*+[\"']))?kind(?(q)(?P=q))[ \t]*:[ \t]*(?P<vq>\\*+[\"'])?Secret(?(vq)(?P=vq))"
    r"(?=[ \t\r\n]*[,}])"
)

# An AWS secret access key: 40 characters of base64 with no name of its own (`export AWS=...`, a line of a
# credentials file). Exactly 40 in a run, with upper case, lower case and a digit: not a hex hash (one case),
# not a piece of a longer base64 blob. redaction_aws.is_aws_secret judges the rest.
AWS_SECRET = re.compile(
    r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[0-9])"
    r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
# A whole Ansible vault (`$ANSIBLE_VAULT;1.1;AES256` and its lines of hex), whatever name it is under.
# A line may end in `\r\n` here and in the YAML forms below: the `\r` is left where it was.
ANSIBLE_VAULT = re.compile(
    r"(?m)^(?P<ind>[ \t]*)\$ANSIBLE_VAULT;[^\r\n]*(?:\r?\n[ \t]*[0-9a-fA-F]+[ \t]*(?=\r?\n|\Z))*"
)
# Here and in the YAML forms below a line's indentation is read whole (possessive): what follows it is no blank,
# and given back a character at a time a line of a megabyte of spaces was searched again at each.
# A name's run followed by `:`, found (possessive: one scan) before the slower search for a credential word
# in it, as redaction's `assigned_secret` does: most lines are not `NAME:` at all.
_THEN_COLON = r"[\"']?(?=[A-Za-z0-9_.\-]{1,90}+[\"']?[ \t]*:)"
# A YAML block scalar under a credential name (`password: |`, `password: >-`, `key: !vault |`): its lines,
# more indented than the name's, are the value. The name's line stays; the block becomes one placeholder.
# In a flow mapping too (`db: {password: |`): its block is the lines more indented than the mapping's line.
# The indentation is the line's whole (possessive): given back a character at a time, a line of 20,000 spaces
# was searched for a `{` 20,000 times (seconds).
YAML_BLOCK = re.compile(
    r"(?im)^(?P<lead>(?P<ind>[ \t]*+)(?:-[ \t]+|[^\n{#]*\{(?:[^\n{}#]*,)?[ \t]*)?"
    + _THEN_COLON
    + NAME
    + r"[\"']?[ \t]*:[ \t]*(?:&\S+[ \t]+)?(?:!\S+[ \t]+)?"
    r"[|>][0-9+\-]{0,2}[ \t]*(?:#[^\n]*)?\r?\n(?:[ \t]*\r?\n)*(?P<bind>(?P=ind)[ \t]+))"
    r"(?P<yb>\S[^\n]*(?:\n(?:[ \t]*\r?\n)*(?P=bind)[^\n]*)*)"
)
# `password: *db_pw`: the alias names an anchor (`defaults: &db_pw hunter2`) whose value is the password; on
# a line of its own or in a flow mapping (`db: {user: bob, password: *db_pw}`).
YAML_ALIAS = re.compile(
    r"(?im)(?:^[ \t]*+(?:-[ \t]+)?|[{,][ \t]*+)" + _THEN_COLON + NAME + r"[\"']?[ \t]*:[ \t]*\*(?P<alias>[^\s,\[\]{}]+)"
    r"[ \t]*(?=[,}]|#|\r?$)"
)
# `password:` with its value on the next, more indented line (`password:\n  S3cret`, `password: &pw\n  S3cret`);
# not a mapping's first key (`db:\n  user: bob`), a list, a comment or a quoted value.
YAML_NEXT_LINE = re.compile(
    r"(?im)^(?P<lead>(?P<ind>[ \t]*+)(?:-[ \t]+)?" + _THEN_COLON + NAME + r"[\"']?[ \t]*(?P<op>:)[ \t]*(?:&\S+[ \t]*)?"
    r"\r?\n(?P=ind)[ \t]+)(?![^\s:#]*:(?:[ \t]|\r?$))(?P<lv>[^\s\"'#\-|>&*!{\[][^\n]*)"
)
# `password:` with its value a list (`password:\n  - S3cret99`, `passwords:\n- a`): each item a value. The items
# are deeper than the key's own `-` (`users:\n  - password:\n    - a\n  - name: bob`: bob is a user), or at
# the key's column or deeper where it has none; one list's items share one column.
YAML_LIST = re.compile(
    r"(?im)^(?P<lead>(?P<ind>[ \t]*+)(?P<kd>-[ \t]+)?" + _THEN_COLON + NAME + r"s?[\"']?[ \t]*:[ \t]*(?:&\S+[ \t]*)?"
    r"(?:#[^\n]*)?\r?\n)(?P<items>(?P<iind>(?P=ind)(?(kd)[ \t]+|[ \t]*))-[ \t]+[^\n]*(?:\n|\Z)"
    r"(?:(?P=iind)-[ \t]+[^\n]*(?:\n|\Z))*)"
)
# `password: [S3cret99, hunter2x]`: a flow list under a credential name, on one line, its own or the next,
# more indented one (`password:\n  [S3cret99]`), an anchor on it or not (`password: &pw [S3cret99]`).
YAML_FLOW_LIST = re.compile(
    r"(?im)^(?P<lead>(?P<ind>[ \t]*+)(?:-[ \t]+)?" + _THEN_COLON + NAME + r"s?[\"']?[ \t]*:[ \t]*"
    r"(?:&[^\s\[\]{},]+[ \t]*)?(?:\r?\n(?P=ind)[ \t]+)?\[)"
    r"(?P<items>[^\[\]{}\n]{1,1000})(?=\][ \t]*(?:#[^\n]*)?\r?$)"
)
# `\"passwords\": [\"S3cret99\", \"hunter2x\"]`: a list under a credential name in escaped JSON (above), its
# items (redaction_escaped.ESCAPED_LIST_ITEM) quoted by the name's quote. `plural`: the name's `s` (`tokens`,
# `secrets`), a list of names as often as of values (redaction_yaml judges which).
ESCAPED_LIST = re.compile(
    r"(?i)(?P<lead>" + ESCAPED_QUOTE + NAME + r"(?P<plural>s)?(?P=eq)[ \t]*:[ \t]*\[)"
    r"(?P<items>(?:" + ESCAPED_LIST_ITEM + r",)*+" + ESCAPED_LIST_ITEM + r")(?=\])"
)
YAML_ANCHOR = re.compile(r"(?m)(?P<lead>:[ \t]*&(?P<anchor>[^\s,\[\]{}]+)[ \t]+)(?P<av>[^\s#][^\n]*)")

# Forms judged like an assignment (redaction._assignment_replacer). A call's form tests for a word character
# first: at each blank, a megabyte of them, its lookbehind and alternatives were tried in vain.
# `name` the credential's name, the value
# in `q`/`qv`/`qend` (quoted), `xv` (a literal to its end) or `pv` (a word in a sentence).
FORMS = {
    # .NET `<add key="ApiKey" value="..."/>` (appSettings).
    # `value=` before `key=`, or a value left unquoted, too. Bounded: a tag is short, and unbounded a tag of
    # many `value=` scanned to its end from each.
    "assigned_secret_xml_attribute": re.compile(
        r"(?i)(?P<lead><add\b[^<>]*?\bkey[ \t]*=[ \t]*[\"']" + NAME + r"[\"'][^<>]*?\bvalue[ \t]*=[ \t]*)"
        r"(?:" + QUOTED + r"|(?P<uv>[^\s\"'<>/]+))"
    ),
    "assigned_secret_xml_attribute_value_first": re.compile(
        r"(?i)(?P<lead><add\b[^<>]{0,300}?\bvalue[ \t]*=[ \t]*)"
        + QUOTED
        + r"(?=[^<>]{0,300}?\bkey[ \t]*=[ \t]*[\"']"
        + NAME
        + r"[\"'])"
    ),
    # `Server=db;User Id=sa;Password=my pass 123;`: in a connection string a value runs to its `;`. After a
    # `;` or a quote only: `PWD=/home/alice` at a line's start is the shell's directory.
    "connection_string_password": re.compile(
        r"(?i)(?P<lead>(?<=[;\"'])[ \t]*(?P<name>password|pwd)[ \t]*=[ \t]*)(?P<xv>[^;\"'\n<>]+)"
    ),
    # A setter whose name says what its argument is: `set_password("...")`, `setApiKey('...')`, `with_token(`;
    # not a getter, whose argument is the secret's name (`get_secret("prod/db")`), nor a test (`is_secret`).
    "call_secret": re.compile(
        r"(?i)(?P<lead>(?=\w)(?<![\w$])(?P<name>(?:set|with|use|update|change|store|save)_?[A-Za-z0-9_]{0,30}?"
        r"(?:passw(?:or)?d|pass[_-]?phrase|secret|api[_-]?key|token))[ \t]*\((?:[^(),\n\"']{1,80},)?[ \t]*)(?P<call>)"
        + QUOTED
        + r"(?=[ \t]*[,)])"
    ),
    # `password(hunter2x)`: an unquoted argument of a call named after a password, judged like an assigned
    # value (a variable, `hash_password(user_pw)`, is code). Not a getter or a check, nor a Verilog port
    # connection `.password(key_in)`.
    "call_password_unquoted": re.compile(
        r"(?i)(?P<lead>(?=\w)(?<![\w.$])(?!(?:get|is|has|check|verify|validate|hash|read|load|fetch)_?)"
        r"(?P<name>[A-Za-z0-9_]{0,30}?(?:passw(?:or)?d|pass[_-]?phrase))[ \t]*\([ \t]*)"
        r"(?P<uv>[^\s(),\"'`]{4,64})(?=[ \t]*\))"
    ),
    # `ftp.login(user, "...")`, `smtp.login(...)`, `imap.login(...)`: a login's second argument is a password.
    "login_password": re.compile(
        r"(?P<lead>(?<![\w$])login[ \t]*\([^(),\n]*,[ \t]*)(?P<name>)" + QUOTED + r"(?=[ \t]*\))"
    ),
    # Kubernetes `env:` `- name: DB_PASSWORD` with its `value:` on the next line.
    "k8s_env_value": re.compile(
        r"(?m)^(?P<lead>[ \t]*-[ \t]+name:[ \t]*[\"']?(?i:" + NAME + r")[\"']?[ \t]*\r?\n[ \t]+value:[ \t]*)" + _VALUE
    ),
    # YAML `password:` with its value on the next line.
    "yaml_next_line_secret": YAML_NEXT_LINE,
    # A sentence: `the password is hunter22`, `the password for root is hunter22`, `passwd hunter22` (a bug
    # thread, a README). Not `pw - 32bits of the key`: after a dash a sentence goes on about something else.
    "prose_password": re.compile(
        r"(?i)(?P<lead>(?<![\w.$/\-])(?P<name>passw(?:or)?d|pass[_-]?phrase|pw)"
        r"(?:(?:[ \t]+for[ \t]+[^\s]{1,40})?[ \t]+(?:is|was)[ \t]*:?|[ \t]*[:=])?[ \t]+)"
        r"(?P<pv>[`\"']?[^\s`\"']{6,64}[`\"']?[.,;:!?)]*)(?!\S)"
    ),
}
