"""Redaction, from a review: time linear in the text, code kept whole, and credentials that leaked."""

import random
import string
import time

import pytest

from chipadapt.curation.redaction import redact


@pytest.mark.parametrize(
    "text",
    [
        "a_" * 100_000,  # every `_` began a match that scanned to the run's end: 40 KB took a minute
        "a-" * 100_000,
        "".join(random.Random(0).choice(string.ascii_letters + string.digits + "-_") for _ in range(200_000)),
    ],
    ids=["underscores", "dashes", "base64url"],
)
def test_a_long_line_is_redacted_in_linear_time(text):
    start = time.process_time()
    redact(text)
    assert (
        time.process_time() - start < 5
    )  # a guard against quadratic time, not a benchmark (CPU-s, about 1; a loaded machine does not count)


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        # the end of the statement stays outside the replacement
        ("DB_PASSWORD=hunter2hunter;", "DB_PASSWORD=<secret>;"),
        ("x = f(DB_PASSWORD=Hunter2Hunter2)", "x = f(DB_PASSWORD=<secret>)"),
        ("cfg = {api_key: sk3cr3tV4lu3xyz}", "cfg = {api_key: <secret>}"),
    ],
)
def test_a_statement_end_after_a_value_is_kept(line, kept):
    assert redact(line)[0] == kept


CODE = [
    # a keyword argument passed on, not a value
    "connect(host=h, password=password)",
    "Client(api_key=api_key)",
    # Verilog sized constants: RTL, including the public FIPS-197 test vector
    "localparam logic [127:0] AES_KEY = 128'h2b7e151628aed2a6abf7158809cf4f3c;",
    "parameter logic [127:0] RndCnstOtpKey = 128'hD5B1E0F2A3C4B5D6E7F8091A2B3C4D5E;",
    "localparam logic [31:0] MagicToken = 32'hDEADBEEF;",
    # a Tcl reference
    "set password $::env(PASS)",
    # an identifier after a plain *_KEY: a column, a field
    "PRIMARY_KEY = 'user_id_column'",
    "SORT_KEY = 'created_at'",
    # near the new forms
    "PWD=/home/alice",
    "first_pass = 3",
    "Basic authentication is used; Authorization: Basic authentication",
    'headers = {"Authorization": f"Bearer {token}"}',
    "mysql -u root -p db",
    "mysql -u root -p$MYSQL_PASSWORD db",
    "tar -cpf out.tar dir -pXYZsecret1",
    "--password $DB_PASSWORD",
    "--password-file /run/secrets/pw",
    "api_key = None if cfg is None else cfg.key",
    "password = prefix + suffix_value",
    "ENV PASSWORD_FILE /run/secrets/pw",
    "#define KEY_WIDTH 128",
    "<api_key>${API_KEY}</api_key>",
    "password: !vault |",
    "task-sk-module-is-here-long-name-class",
]


@pytest.mark.parametrize("line", CODE)
def test_code_near_a_credential_is_kept(line):
    assert redact(line) == (line, {})


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer abcDEF123456ghiJKL789", "abcDEF"),
        ('curl -H "Authorization: Bearer abcDEF123456ghiJKL789" https://x', "abcDEF"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpw"),
        ("machine example.com login alice password hunter2xyz", "hunter2xyz"),
        ("machine example.com\n  login alice\n  password hunter2xyz", "hunter2xyz"),
        ("mysql -u root -p'S3cretPass' db", "S3cretPass"),
        ("mysql -uroot -pS3cretPass db", "S3cretPass"),
        ("sshpass -p 'S3cretPass' ssh host", "S3cretPass"),
        ("deploy --password S3cretPass123", "S3cretPass123"),
        ("redis://:S3cretPass123@cache:6379/0", "S3cretPass123"),
        ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_abcdef"),
        ("sk-proj-abcdEFGHijklMNOPqrstUVWXyz0123456789abcd", "abcdEFGH"),
        ("key is sk-abcdEFGHijklMNOPqrstUVWXyz0123456789abcdef", "abcdEFGH"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "T00000000"),
        ("DB_PASS=hunter2hunter2", "hunter2"),
        ("MYSQL_PWD=s3cretvalue", "s3cretvalue"),
        ("stringData:\n  DB_PASS: hunter2hunter2", "hunter2"),
        ("ENV DB_PASSWORD S3cretPass123", "S3cretPass123"),
        ('#define API_KEY "abcd1234efgh5678ijkl"', "abcd1234"),
        ("<password>S3cretPass123</password>", "S3cretPass123"),
        # a line's value runs to its end, less a comment
        ("password: correcthorse battery staple", "battery"),
        ("[db]\npassword = my secret pass phrase", "phrase"),
        ("password: hunter2 is my pass  # rotate monthly", "hunter2"),
        ("API_KEY = 'abc_def_123'", "abc_def"),
    ],
)
def test_a_credential_in_a_common_form_is_replaced(line, secret):
    text, counts = redact(line)
    assert secret not in text and "<secret>" in text and counts, text


def test_a_comment_after_a_line_value_is_kept():
    assert redact("password: correcthorse battery staple  # rotate monthly\n")[0] == (
        "password: <secret>  # rotate monthly\n"
    )


@pytest.mark.parametrize(
    "line",
    [
        "connect(user=u,password=pw_value_here,host=h)",
        "var a={password:e.password,user:e.user};b.token=c;",
        "password: '%env(DB_PASSWORD)%'",
        'password: "${{ secrets.DB_PASSWORD }}"',
        "x.password = '#{ENV[\"PW\"]}'",
        "  api_key: !secret openai_api_key",
    ],
)
def test_code_and_references_in_a_line_are_kept(line):
    assert redact(line) == (line, {})


def test_a_keyword_argument_secret_is_replaced_to_its_comma():
    assert redact("conn(password=S3cretPass123,host=h)")[0] == "conn(password=<secret>,host=h)"


@pytest.mark.parametrize("text", ["sk-" * 70_000, "x-sk-" * 40_000, "password=x" + ")" * 200_000])
def test_long_runs_of_key_prefixes_or_closers_take_linear_time(text):
    start = time.process_time()
    redact(text)
    assert time.process_time() - start < 5
