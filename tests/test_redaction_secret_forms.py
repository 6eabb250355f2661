"""Redaction of the leaks session 29 left: a random token after `secret` that begins like a process name,
short passwords with `$`, `_` or `.` in them, a Kubernetes Secret written as JSON or as a YAML flow map; and of
what it redacted too much: a ConfigMap's `data:` beside a Secret in one `kind: List`, a YAML anchor on a
redacted value, an alias. Then of what the review of that found: a certificate bundled with its key, a password
that begins with `*`, a Secret escaped in a JSON string (kubectl's last-applied-configuration), a flow map on
the line below `data:` or with a `{` in a value; and a short variable in code, a process name with a longer
suffix and a `kind: Secret` in a string's text, redacted too much. Then a short password with `_` outside a
statement of code (a sentence, a command line, a flow map, a URL), kept, and an alias of another document's anchor."""

import base64
import json
import time

import pytest

from chipadapt.curation.redaction import redact

CERTIFICATE_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb3\n").decode()
CERTIFICATE_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb3xyzxyzxyzxyz\n-----END CERTIFICATE-----\n"
KEY_PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAxyzxyzxyzxyzabcdef\n-----END RSA PRIVATE KEY-----\n"
# A certificate and its private key in one value (haproxy's .pem): a certificate at its start.
BUNDLE_B64 = base64.b64encode((CERTIFICATE_PEM + KEY_PEM).encode()).decode()
# `kubectl get secret -o json`: the last-applied-configuration annotation holds the Secret again, escaped.
KUBECTL_LIST = (
    json.dumps(
        {
            "apiVersion": "v1",
            "items": [
                {
                    "apiVersion": "v1",
                    "data": {"password": "UzNjcmV0IQ==", "host": "ZGIuZXhhbXBsZQ=="},
                    "kind": "Secret",
                    "metadata": {
                        "annotations": {
                            "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"v1","data":'
                            '{"password":"UzNjcmV0IQ=="},"kind":"Secret"}\n'
                        },
                        "name": "db",
                    },
                    "type": "Opaque",
                }
            ],
            "kind": "List",
        },
        indent=4,
    )
    + "\n"
)
JSON_SECRET = """{
    "apiVersion": "v1",
    "data": {
        "password": "UzNjcmV0IQ==",
        "username": "YWRtaW4="
    },
    "kind": "Secret",
    "type": "Opaque"
}
"""
YAML_LIST = """apiVersion: v1
kind: List
items:
- kind: ConfigMap
  data:
    mode: fast
    level: debug7
- kind: Secret
  data:
    password: UzNjcmV0
"""
JSON_LIST = (
    '{"kind": "List", "items": [{"kind": "ConfigMap", "data": {"level": "debug7x9"}}, '
    '{"kind": "Secret", "data": {"password": "UzNjcmV0"}}]}\n'
)


@pytest.mark.parametrize(
    ("text", "redacted", "counts"),
    [
        # after `secret`, a value that only begins like a process name is its value
        ("secret: sky130xyz\n", "secret: <secret>\n", {"assigned_secret": 1}),
        ("secret: gf180abc\n", "secret: <secret>\n", {"assigned_secret": 1}),
        ("secret: rv32xyz\n", "secret: <secret>\n", {"assigned_secret": 1}),
        # short passwords with `$`, `_` and `.` in them
        ("password: pa$$1\n", "password: <secret>\n", {"assigned_secret": 1}),
        ("password: my_p.1\n", "password: <secret>\n", {"assigned_secret": 1}),
        ("password: my_pass.1\n", "password: <secret>\n", {"assigned_secret": 1}),
        ('{"password": "pa$$1"}\n', '{"password": "<secret>"}\n', {"assigned_secret": 1}),
        ("DB_PASS=pa$$1\n", "DB_PASS=<secret>\n", {"assigned_secret": 1}),
        # a Secret in JSON, on one line or pretty-printed with `data` before `kind`: every value, whatever its key
        (
            '{"kind": "Secret", "data": {"tls.key": "LS0tabc123", "username": "YWRtaW4="}}\n',
            '{"kind": "Secret", "data": {"tls.key": "<secret>", "username": "<secret>"}}\n',
            {"k8s_secret_data": 2},
        ),
        (
            JSON_SECRET,
            JSON_SECRET.replace("UzNjcmV0IQ==", "<secret>").replace("YWRtaW4=", "<secret>"),
            {"k8s_secret_data": 2},
        ),
        # ... and as a YAML flow map, block or flow
        (
            "kind: Secret\ndata: {password: UzNjcmV0, user: YWRtaW4=}\n",
            "kind: Secret\ndata: {password: <secret>, user: <secret>}\n",
            {"k8s_secret_data": 2},
        ),
        (
            '{kind: Secret, stringData: {user: "admin"}}\n',
            '{kind: Secret, stringData: {user: "<secret>"}}\n',
            {"k8s_secret_data": 1},
        ),
        # in a List, the Secret's items only
        (YAML_LIST, YAML_LIST.replace("UzNjcmV0", "<secret>"), {"k8s_secret_data": 1}),
        (JSON_LIST, JSON_LIST.replace("UzNjcmV0", "<secret>"), {"k8s_secret_data": 1}),
        # an anchor on a redacted value stays, and so does an alias to it
        (
            "kind: Secret\ndata:\n  password: &pw UzNjcmV0\n  copy: *pw\n",
            "kind: Secret\ndata:\n  password: &pw <secret>\n  copy: *pw\n",
            {"k8s_secret_data": 1},
        ),
        (
            "stringData:\n  password: &pw\n    S3cret99\n",
            "stringData:\n  password: &pw\n    <secret>\n",
            {"k8s_secret_data": 1},
        ),
        (
            "db:\n  password: &pw S3cret\nbackup:\n  password: *pw\n",
            "db:\n  password: &pw <secret>\nbackup:\n  password: *pw\n",
            {"yaml_anchor_secret": 1},
        ),
        ("password: &pw [S3cret99]\n", "password: &pw [<secret>]\n", {"yaml_list_secret": 1}),
    ],
)
def test_the_leaks_are_redacted_and_keys_kept(text, redacted, counts):
    assert redact(text) == (redacted, counts)


@pytest.mark.parametrize(
    "text",
    [
        # process names after `secret` and pw, with the suffixes they have
        "secret: sky130A\nsecret: sg13g2\nsecret: gf180mcuD\nsecret: lpddr5x\n",
        "PW: sky130hd\n",
        "secret: tsmc65gp\nsecret: tsmc28hpm\nsecret: gf22fdx\nsecret: sky90fd\nsecret: arm926ej\n",
        "PW: tsmc65gp\nPW: tsmc28hpm\nPW: gf22fdx\nPW: sky90fd\nPW: arm926ej\n",
        # a type, a version and a shell expansion after a password: no characters of a password
        "password: int_32\npassword: v1.2\npassword: pw${N}\n",
        # an alias names an anchor's value, redacted where the anchor is
        "base: &db_password_1\n  user: bob\npassword: *db_password_1\n",
        "base: &pw_value9\n  user: bob\ndb: {password: *pw_value9}\n",
        # a short name in code with `_` in it is a variable
        "module m;\n  assign secret = key_r1;\nendmodule\n",
        "  case (st)\n    SECRET: st_1 = 2;\n  endcase\n",
        "int main() {\n  char *password = pw_1;\n}\n",
        # `kind: Secret` in a string's text says nothing of the object's `data`
        '{"description": "kind: Secret", "data": {"mode": "fast"}}\n',
        '{"note": "kind: Secret, see below", "data": {"mode": "fast"}}\n',
        # a ConfigMap's data, in YAML's flow map and in JSON, and a Secret's template
        "kind: ConfigMap\ndata: {mode: fast, level: debug7}\n",
        '{"kind": "ConfigMap", "data": {"level": "debug7x9"}}\n',
        "kind: Secret\ndata: {{ toYaml .Values.secrets | nindent 2 }}\n",
    ],
)
def test_text_beside_the_leaks_is_kept(text):
    assert redact(text) == (text, {})


@pytest.mark.parametrize(
    "text",
    [
        '{"kind": "Secret", "data": {' + " " * 40_000 + "}}",
        "kind: Secret\ndata: {" + "a " * 40_000 + "}\n",
        "kind: Secret\ndata: {a: " + "'\"" * 40_000 + "}\n",
        '{"kind": "Secret", ' * 5_000 + '"data": {"a": "b"}' + "}" * 5_000,
        # a string left open, every quote after it escaped: searched again from each, quadratic time
        '{"kind": "Secret", "data": {"a": "b"}}\n"' + '\\"' * 20_000 + "\n",
        '{"kind": "Secret", "data": {"a": "' + '\\"' * 20_000 + "}}\n",
        # ... and in JSON escaped in a string
        '"' + '{\\"kind\\":\\"Secret\\",\\"data\\":{\\"a\\":\\"' * 5_000 + "}\n",
    ],
)
def test_the_flow_forms_take_linear_time(text):
    start = time.process_time()
    redact(text)
    assert (
        time.process_time() - start < 5
    )  # a guard against quadratic time, not a benchmark (CPU-s: a loaded machine does not count)


@pytest.mark.parametrize(
    ("text", "redacted", "counts"),
    [
        # every value of a Secret, in every form: a certificate too, which may bundle its private key
        (
            f'{{"kind": "Secret", "data": {{"haproxy.pem": "{BUNDLE_B64}"}}}}\n',
            '{"kind": "Secret", "data": {"haproxy.pem": "<secret>"}}\n',
            {"k8s_secret_data": 1},
        ),
        (
            f"kind: Secret\ndata: {{tls.crt: {BUNDLE_B64}}}\n",
            "kind: Secret\ndata: {tls.crt: <secret>}\n",
            {"k8s_secret_data": 1},
        ),
        (
            f"kind: Secret\ndata:\n  tls.crt: {BUNDLE_B64}\n",
            "kind: Secret\ndata:\n  tls.crt: <secret>\n",
            {"k8s_secret_data": 1},
        ),
        (
            f'{{"kind": "Secret", "data": {{"ca.crt": "{CERTIFICATE_B64}"}}}}\n',
            '{"kind": "Secret", "data": {"ca.crt": "<secret>"}}\n',
            {"k8s_secret_data": 1},
        ),
        # a password that begins with `*` where the text defines no anchor of that name
        (
            "mysql root password: *Hx92kq!Lm7\nDB_PASSWORD: *Zx9kq2Tr0ub\n",
            "mysql root password: <secret>\nDB_PASSWORD: <secret>\n",
            {"assigned_secret": 2},
        ),
        (
            "kind: Secret\ndata:\n  copy: *Zx9kq2Tr0ub\n",
            "kind: Secret\ndata:\n  copy: <secret>\n",
            {"k8s_secret_data": 1},
        ),
        # the Secret escaped in kubectl's last-applied-configuration, and in a log line
        (
            KUBECTL_LIST,
            KUBECTL_LIST.replace("UzNjcmV0IQ==", "<secret>").replace("ZGIuZXhhbXBsZQ==", "<secret>"),
            {"k8s_secret_data": 3},
        ),
        (
            '{"msg": "applied", "object": "{\\"kind\\":\\"Secret\\",\\"data\\":{\\"host\\":\\"ZGIuZXhh\\"}}"}\n',
            '{"msg": "applied", "object": "{\\"kind\\":\\"Secret\\",\\"data\\":{\\"host\\":\\"<secret>\\"}}"}\n',
            {"k8s_secret_data": 1},
        ),
        # a flow map on the line below `data:` keeps its `}`
        (
            "kind: Secret\ndata:\n  {password: UzNjcmV0, user: YWRtaW4=}\n",
            "kind: Secret\ndata:\n  {password: <secret>, user: <secret>}\n",
            {"k8s_secret_data": 2},
        ),
        # a `{` in a value: embedded JSON, a Helm template
        (
            '{"kind": "Secret", "stringData": {"config.json": "{\\"a\\": 1}", "license": "XK7Q-99AB-LL2Z"}}\n',
            '{"kind": "Secret", "stringData": {"config.json": "<secret>", "license": "<secret>"}}\n',
            {"k8s_secret_data": 2},
        ),
        (
            "kind: Secret\ndata: {password: {{ .Values.pw | b64enc }}, user: YWRtaW4=}\n",
            "kind: Secret\ndata: {password: {{ .Values.pw | b64enc }}, user: <secret>}\n",
            {"k8s_secret_data": 1},
        ),
        # a short value with `_` or `.` is a password where it is quoted or a config's
        ('{"password": "pw_1"}\n', '{"password": "<secret>"}\n', {"assigned_secret": 1}),
        ("DB_PASS=my_p1\n", "DB_PASS=<secret>\n", {"assigned_secret": 1}),
    ],
)
def test_the_review_leaks_are_redacted(text, redacted, counts):
    assert redact(text) == (redacted, counts)


# A short identifier with `_` in it is a variable only in a statement of code: everywhere else it is a password.
# Each row after a line of plain text and after a line that makes the document code.
SHORT_PASSWORDS_WITH_UNDERSCORE = [
    ("the password is my_pw12\n", "the password is <secret>\n", "prose_password"),
    ("mysql -u root --password my_pw1 db\n", "mysql -u root --password <secret> db\n", "command_line_password"),
    ("mysql --password=my_pw1 db\n", "mysql --password=<secret> db\n", "assigned_secret"),
    ("mysql -uroot -proot_12 db\n", "mysql -uroot -p<secret> db\n", "mysql_password"),
    ("sshpass -p root_12 ssh host\n", "sshpass -p <secret> ssh host\n", "sshpass_password"),
    ("machine h login bob password root_12\n", "machine h login bob password <secret>\n", "netrc_password"),
    (
        "docker login -u bob -p ab_c12 registry\n",
        "docker login -u bob -p <secret> registry\n",
        "registry_login_password",
    ),
    ("app --client-secret ab_1234\n", "app --client-secret <secret>\n", "command_line_password"),
    (
        "https://host/login?password=ab_c12&user=x\n",
        "https://host/login?password=<secret>&user=x\n",
        "assigned_secret",
    ),
    ("creds: {user: bob, password: root_12}\n", "creds: {user: bob, password: <secret>}\n", "assigned_secret"),
    ("users: [{name: bob, password: root_12}]\n", "users: [{name: bob, password: <secret>}]\n", "assigned_secret"),
    # Tcl's and csh's unquoted word is a string (a variable is `$a_b1`)
    ("set password a_b1\n", "set password <secret>\n", "assigned_secret_tcl"),
]


@pytest.mark.parametrize("before", ["", "import os\n", "module m;\n"])
@pytest.mark.parametrize(("text", "redacted", "form"), SHORT_PASSWORDS_WITH_UNDERSCORE)
def test_a_short_password_with_an_underscore_is_redacted_outside_a_statement(before, text, redacted, form):
    assert redact(before + text) == (before + redacted, {form: 1})


@pytest.mark.parametrize(
    "text",
    [
        "module m;\n  assign secret = key_r1;\nendmodule\n",
        "  case (st)\n    SECRET: st_1 = 2;\n  endcase\n",
        "int main() {\n  char *password = pw_1;\n}\n",
        "#define API_SECRET key_r1\nint x;\n",
        # SystemVerilog's assignment pattern is code, not a flow map
        "module m;\n  key_t k = '{secret: s_r1, valid: 1'b1};\nendmodule\n",
    ],
)
def test_a_short_identifier_in_a_statement_of_code_is_kept(text):
    assert redact(text) == (text, {})


@pytest.mark.parametrize(
    ("text", "redacted", "counts"),
    [
        # an anchor is its own `---` document's: in the next, `*db_pw_x9` is no alias of it but a value
        (
            "base: &db_pw_x9 hunter22x\n---\npassword: *db_pw_x9\n",
            "base: &db_pw_x9 <secret>\n---\npassword: <secret>\n",
            {"yaml_anchor_secret": 1, "assigned_secret": 1},
        ),
        (
            "x: &pw_value9 1\n---\ndb: {password: *pw_value9}\n",
            "x: &pw_value9 1\n---\ndb: {password: <secret>}\n",
            {"assigned_secret": 1},
        ),
        (
            "kind: Secret\ndata:\n  a: &pw UzNjcmV0IQ==\n---\nkind: Secret\ndata:\n  b: *pw\n",
            "kind: Secret\ndata:\n  a: &pw <secret>\n---\nkind: Secret\ndata:\n  b: <secret>\n",
            {"k8s_secret_data": 2},
        ),
        (
            "kind: Secret\ndata: {a: &pw UzNjcmV0IQ==}\n---\nkind: Secret\ndata: {b: *pw}\n",
            "kind: Secret\ndata: {a: &pw <secret>}\n---\nkind: Secret\ndata: {b: <secret>}\n",
            {"k8s_secret_data": 2},
        ),
        # ... and in its own document it stays an alias
        (
            "---\nbase: &db_pw_x9 hunter22x\npassword: *db_pw_x9\n",
            "---\nbase: &db_pw_x9 <secret>\npassword: *db_pw_x9\n",
            {"yaml_anchor_secret": 1},
        ),
        (
            "kind: Secret\ndata:\n  a: &pw UzNjcmV0IQ==\n  b: *pw\n",
            "kind: Secret\ndata:\n  a: &pw <secret>\n  b: *pw\n",
            {"k8s_secret_data": 1},
        ),
    ],
)
def test_an_alias_names_an_anchor_of_its_own_document(text, redacted, counts):
    assert redact(text) == (redacted, counts)


def test_aliases_in_many_documents_take_linear_time():
    text = "a: &pw_x1 1\n" + "---\npassword: *pw_x1\n" * 5_000
    start = time.process_time()
    redacted, counts = redact(text)
    assert (
        time.process_time() - start < 5
    )  # a guard against quadratic time, not a benchmark (CPU-s: a loaded machine does not count)
    assert counts == {"assigned_secret": 5_000}
