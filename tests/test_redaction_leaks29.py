"""Redaction of the leaks session 28 left: a Kubernetes Secret's values, a Docker config's logins, YAML lists,
blocks and a flow list on the next line under a password, and a short or process-like password after its key;
with the process names, config maps and templates next to them that must stay as they are."""

import base64
import textwrap
import time

import pytest

from chipadapt.curation.redaction import redact

SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
data:
  password: UzNjcmV0IQ==
  username: YWRtaW4=
"""
PRIVATE_KEY_B64 = base64.b64encode(
    b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    b"-----END RSA PRIVATE KEY-----\n"
).decode()
CERTIFICATE_B64 = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb3\n-----END CERTIFICATE-----\n"
).decode()
DOCKER_CONFIG = "eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlLmNvbSI6eyJhdXRoIjoiZFhObGNqcHdZWE56In19fQ=="


@pytest.mark.parametrize(
    ("text", "redacted", "counts"),
    [
        # a Secret's `data:` (base64) and `stringData:`: every value, whatever its key
        (
            SECRET,
            SECRET.replace("UzNjcmV0IQ==", "<secret>").replace("YWRtaW4=", "<secret>"),
            {"k8s_secret_data": 2},
        ),
        (
            "kind: Secret\nstringData:\n  password: S3cret!\n  api-token: abcdef\n",
            "kind: Secret\nstringData:\n  password: <secret>\n  api-token: <secret>\n",
            {"k8s_secret_data": 2},
        ),
        (
            "stringData:\n  DB_URL: postgres-main\n",
            "stringData:\n  DB_URL: <secret>\n",
            {"k8s_secret_data": 1},
        ),
        # quoted, with a comment, a block, blank lines, CRLF; a ConfigMap's `data:` in the same file is kept
        (
            "kind: ConfigMap\ndata:\n  level: debug\n---\nkind: Secret\ndata:\n  user: 'YWRtaW4='  # admin\n\n"
            "  tls.key: |\n    LS0tLS1CRUdJTi\n    QUJD\n\n  # next\n  pw: UzNjcmV0IQ==\nmetadata:\n  name: x\n",
            "kind: ConfigMap\ndata:\n  level: debug\n---\nkind: Secret\ndata:\n  user: '<secret>'  # admin\n\n"
            "  tls.key: |\n    <secret>\n\n  # next\n  pw: <secret>\nmetadata:\n  name: x\n",
            {"k8s_secret_data": 3},
        ),
        (
            "kind: Secret\r\ndata:\r\n  password: UzNjcmV0IQ==\r\n",
            "kind: Secret\r\ndata:\r\n  password: <secret>\r\n",
            {"k8s_secret_data": 1},
        ),
        # a Docker config: base64 under its key or of its own format, and a registry's `auth` in it
        (
            f"kind: Secret\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {DOCKER_CONFIG}\n",
            "kind: Secret\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: <secret>\n",
            {"k8s_secret_data": 1},
        ),
        (
            f"data:\n  .dockerconfigjson: {DOCKER_CONFIG}\n",
            "data:\n  .dockerconfigjson: <secret>\n",
            {"docker_config": 1},
        ),
        (
            f"kubectl create secret generic r --from-literal=.dockercfg={DOCKER_CONFIG}",
            "kubectl create secret generic r --from-literal=.dockercfg=<secret>",
            {"docker_config": 1},
        ),
        (f"echo {DOCKER_CONFIG} | base64 -d", "echo <secret> | base64 -d", {"docker_config": 1}),
        (
            '{\n  "auths": {\n    "registry.example.com": {\n      "auth": "dXNlcjpwYXNz"\n    }\n  }\n}\n',
            '{\n  "auths": {\n    "registry.example.com": {\n      "auth": "<secret>"\n    }\n  }\n}\n',
            {"docker_auth": 1},
        ),
        ("auths:\n  r.io:\n    auth: dXNlcjpwYXNz\n", "auths:\n  r.io:\n    auth: <secret>\n", {"docker_auth": 1}),
        # YAML lists, folded and literal blocks under a password, a short one with punctuation included
        ("password:\n  - S3cret\n", "password:\n  - <secret>\n", {"yaml_list_secret": 1}),
        ("password:\n  - S3cret!\n", "password:\n  - <secret>\n", {"yaml_list_secret": 1}),
        ("password: >-\n    S3cret\n", "password: >-\n    <secret>\n", {"yaml_block_secret": 1}),
        ("password: >-\n    S3cret!\n", "password: >-\n    <secret>\n", {"yaml_block_secret": 1}),
        ("password: |\n  S3cret\n", "password: |\n  <secret>\n", {"yaml_block_secret": 1}),
        ("password: |\n  p@ss1\n", "password: |\n  <secret>\n", {"yaml_block_secret": 1}),
        ("password: S3cret!\n", "password: <secret>\n", {"assigned_secret": 1}),
        # a flow list on the line below its key
        ("password:\n  [S3cret]\n", "password:\n  [<secret>]\n", {"yaml_list_secret": 1}),
        (
            "db:\n  passwords:\n    [S3cret, hunter2x]\n  user: bob\n",
            "db:\n  passwords:\n    [<secret>, <secret>]\n  user: bob\n",
            {"yaml_list_secret": 2},
        ),
        # after a key that says password, a process-like value is its value
        ("password: sky1234\n", "password: <secret>\n", {"assigned_secret": 1}),
        ("db_password: sky130\n", "db_password: <secret>\n", {"assigned_secret": 1}),
        ("DB_PASS=gf180mcu\n", "DB_PASS=<secret>\n", {"assigned_secret": 1}),
        ("password = tsmc7\n", "password = <secret>\n", {"assigned_secret": 1}),
        # ... and so after any other name than the bare `secret` and pass/pw/pwd, and after those a random token
        # that only begins like a process name
        ("client_secret: sky130xyz\n", "client_secret: <secret>\n", {"assigned_secret": 1}),
        ("api_key: gen2x8f9k3m\n", "api_key: <secret>\n", {"assigned_secret": 1}),
        ("token: arm7x9k2m4q8\n", "token: <secret>\n", {"assigned_secret": 1}),
        ("db_secret: tsmc7abc\n", "db_secret: <secret>\n", {"assigned_secret": 1}),
        ("secret: sm1x9k2m4q8\n", "secret: <secret>\n", {"assigned_secret": 1}),
        ("PW: arm7x9k2m4q8\n", "PW: <secret>\n", {"assigned_secret": 1}),
        # a Secret in JSON (`kubectl get secret -o json`): its private key found by its base64, on one line or
        # wrapped; a certificate beside it is a Secret's value like any other (a `tls.crt` may bundle its key)
        (
            f'{{"kind": "Secret", "data": {{"tls.crt": "{CERTIFICATE_B64}", "tls.key": "{PRIVATE_KEY_B64}"}}}}\n',
            '{"kind": "Secret", "data": {"tls.crt": "<secret>", "tls.key": "<secret>"}}\n',
            {"private_key": 1, "k8s_secret_data": 1},
        ),
        (
            "key: |\r\n  " + "\r\n  ".join(textwrap.wrap(PRIVATE_KEY_B64, 40)) + "\r\n  done\r\nnext: 1\r\n",
            "key: |\r\n  <secret>\r\n  done\r\nnext: 1\r\n",
            {"private_key": 1},
        ),
    ],
)
def test_the_leaks_are_redacted_and_keys_kept(text, redacted, counts):
    assert redact(text) == (redacted, counts)


@pytest.mark.parametrize(
    "text",
    [
        # process names in ordinary text, and after names that are not a password's
        "We taped out on sky130 and tsmc7, and gf180mcu is next.\n",
        "pdk: sky130\nnode: gf180mcu\nprocess = tsmc7\n",
        "PW: sky130\n",
        "secret: tsmc7\n",
        # a ConfigMap's data, a Secret's Helm templates and empty values
        "kind: ConfigMap\ndata:\n  password_policy: strict\n  level: debug\n",
        "kind: ConfigMap\ndata:\n  level: debug\n---\nkind: Secret\nstringData: {}\n",
        'kind: Secret\ndata:\n  password: {{ .Values.password | b64enc }}\n  user: "{{ .Values.user | b64enc }}"\n'
        '  token: ""\n  key: $API_KEY\n',
        # `auth` that is no login: a flag, a word, a hex hash
        'auth: true\nauth: none\n"auth": "deadbeefdeadbeef"\n',
        "auth: YWRtaW4=\n",  # base64 of `admin`, no password in it
        # short words after a password that are a type or a hash's name
        "password: uint64\npassword: sha256\n",
        # process names after the bare `secret` and pass/pw, a RISC-V ISA's letters included
        "secret: sky130\nsecret: gf180\nsecret: gf180mcu\n",
        "PASS: rv32imac\nPW: gf180mcu\n",
        # base64 cut at a character base64 has not is no login; a path to a Docker config is no config
        "auth: dXNlcjpwYXNz_d29yZA==\n",
        "kubectl create secret generic r --from-file=.dockerconfigjson=/home/alice/.docker/config.json\n",
        "kubectl create secret generic r --from-file=.dockerconfigjson=config/docker.json\n",
        # `-----BEGIN` in base64 that is no private key: a certificate, a run too short to hold a header
        f'"tls.crt": "{CERTIFICATE_B64}"\n',
        "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVkt\n",
    ],
)
def test_text_beside_the_leaks_is_kept(text):
    assert redact(text) == (text, {})


@pytest.mark.parametrize(
    "text",
    [
        "kind: Secret\ndata:\n" + "  a: b\n" * 10_000,
        "kind: Secret\n---\n" * 10_000 + "data:\n  a: b\n",
        "data:\n" * 20_000,
        "stringData:\n  a: |\n" + "    x\n\n" * 40_000,
        "auth: " + "A" * 200_000 + "-",
        ".dockerconfigjson: " * 10_000,
        "eyJhdXRocyI6" * 20_000,
        "password:\n  [" * 10_000,
    ],
    ids=["entries", "documents", "maps", "block", "auth", "docker-keys", "docker-format", "flow-next"],
)
def test_the_new_forms_take_linear_time(text):
    start = time.process_time()
    redact(text)
    assert (
        time.process_time() - start < 5
    )  # a guard against quadratic time, not a benchmark (CPU-s: a loaded machine does not count)


@pytest.mark.parametrize(
    "text",
    [
        "kind: Secret\ndata:\n  a" + " " * 40_000 + "b\n",
        "stringData:\n  a" + " " * 40_000 + "b\n",
        "password:\n" + " " * 30_000 + "[x",
        "LS0tLS1CRUdJTi" * 10_000,
        "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVkt" + "\nABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij" * 5_000,
    ],
    ids=["entry-spaces", "string-data-spaces", "indented-line", "key-starts", "key-lines"],
)
def test_long_runs_take_linear_time(text):
    """A map entry's key followed by a long run of spaces, and a long indented line (which YAML_BLOCK searched
    for a `{` once for every shorter indentation), took seconds (5 s to 14 s) in quadratic time; in linear
    time, well under a second."""
    start = time.process_time()
    redact(text)
    assert time.process_time() - start < 2
