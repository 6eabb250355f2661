"""Redaction of the leaks session 29 left: a random token after `secret` that begins like a process name,
short passwords with `$`, `_` or `.` in them, a Kubernetes Secret written as JSON or as a YAML flow map; and of
what it redacted too much: a ConfigMap's `data:` beside a Secret in one `kind: List`, a YAML anchor on a
redacted value, an alias."""

import base64
import time

import pytest

from chipadapt.curation.redaction import redact

CERTIFICATE_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb3\n").decode()
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
        # a type, a version and a shell expansion after a password: no characters of a password
        "password: int_32\npassword: v1.2\npassword: pw${N}\n",
        # an alias names an anchor's value, redacted where the anchor is
        "password: *db_password_1\n",
        "db: {password: *pw_value9}\n",
        # a ConfigMap's data, in YAML's flow map and in JSON, and a Secret's template
        "kind: ConfigMap\ndata: {mode: fast, level: debug7}\n",
        '{"kind": "ConfigMap", "data": {"level": "debug7x9"}}\n',
        "kind: Secret\ndata: {{ toYaml .Values.secrets | nindent 2 }}\n",
        # a certificate in a JSON Secret is public
        f'{{"kind": "Secret", "data": {{"ca.crt": "{CERTIFICATE_B64}"}}}}\n',
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
    ],
)
def test_the_flow_forms_take_linear_time(text):
    start = time.perf_counter()
    redact(text)
    assert time.perf_counter() - start < 5  # a guard against quadratic time, not a benchmark
