"""Redaction, from the leaks a session left: credentials in forms that got through whole, and the UI
strings, paths and RTL names next to them that must stay as they are."""

import time

import pytest

from chipadapt.curation.redaction import redact

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret key


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        # a bare AWS secret access key: under a name that says nothing, or none, beside its key id
        (f'aws_secret = "{AWS_SECRET}"', 'aws_secret = "<secret>"'),
        (f"export AWS={AWS_SECRET}", "export AWS=<secret>"),
        (f"[default]\nAKIAIOSFODNN7EXAMPLE\n{AWS_SECRET}\n", "[default]\n<secret>\n<secret>\n"),
        (f"keys: {AWS_SECRET} (rotated)", "keys: <secret> (rotated)"),
        # YAML blocks, anchors and aliases, Ansible vaults
        ("password: |\n  correct horse\n  battery staple\nuser: bob\n", "password: |\n  <secret>\nuser: bob\n"),
        (
            "db:\n  password: >-\n    S3cret\n    pass\n  user: bob\n",
            "db:\n  password: >-\n    <secret>\n  user: bob\n",
        ),
        ("password: &pw hunter2hunter2\nother: *pw\n", "password: &pw <secret>\nother: *pw\n"),
        (
            "defaults: &db_pw hunter2hunter2\ndb:\n  password: *db_pw\n",
            "defaults: &db_pw <secret>\ndb:\n  password: *db_pw\n",
        ),
        (
            "db_password: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n          62313365396662343061393464336163\n"
            "          3966\nnext: 1\n",
            "db_password: !vault |\n          <secret>\nnext: 1\n",
        ),
        ("$ANSIBLE_VAULT;1.1;AES256\n6231336539666234\n3061393464336163\n", "<secret>\n"),
        # .NET configuration
        ('<add key="ApiKey" value="abcd1234efgh5678"/>', '<add key="ApiKey" value="<secret>"/>'),
        (
            '<add name="db" connectionString="Server=db;User Id=sa;Password=my pass 123;" />',
            '<add name="db" connectionString="Server=db;User Id=sa;Password=<secret>;" />',
        ),
        ('"Data Source=db;Pwd=Xy9#kLm2q"', '"Data Source=db;Pwd=<secret>"'),
        ("<password>hunter22</password>", "<password><secret></password>"),
        # prose, and the short names a shell or a chat uses
        ("the password is hunter22", "the password is <secret>"),
        ("the password is `hunter22`.", "the password is `<secret>`."),
        ("pw: hunter22", "pw: <secret>"),
        ("passwd hunter22 for root", "passwd <secret> for root"),
        ("PW=hunter22", "PW=<secret>"),
        ("PASS=hunter22", "PASS=<secret>"),
        ("PWD=hunter22", "PWD=<secret>"),
        # snake_case and dotted values in a config file, triple quotes, calls, short passwords
        ("[db]\npassword = my_secret_pass\n", "[db]\npassword = <secret>\n"),
        ("password: my_secret_pass", "password: <secret>"),
        ("DB_PASSWORD=my_secret_pass", "DB_PASSWORD=<secret>"),
        ("db.password=foo.bar.baz", "db.password=<secret>"),
        ('password = """S3cret pass phrase"""', 'password = """<secret>"""'),
        ('client.set_password("hunter22")', 'client.set_password("<secret>")'),
        ('setApiKey("abcd1234efgh5678")', 'setApiKey("<secret>")'),
        ('smtp.login(user, "S3cretPass1")', 'smtp.login(user, "<secret>")'),
        ("password: abc123", "password: <secret>"),
        ("secret = 'abc123'", "secret = '<secret>'"),
        # after pass, pw or pwd only a value that looks random: quoted, or one word with a letter and a digit
        ('pw = "hunter22"', 'pw = "<secret>"'),
        # CRLF line ends, kept as they were
        (
            "password: |\r\n  correct horse\r\n  battery staple\r\nuser: bob\r\n",
            "password: |\r\n  <secret>\r\nuser: bob\r\n",
        ),
        (
            "defaults: &db_pw hunter2hunter2\r\ndb:\r\n  password: *db_pw\r\n",
            "defaults: &db_pw <secret>\r\ndb:\r\n  password: *db_pw\r\n",
        ),
        (
            "db_password: !vault |\r\n          $ANSIBLE_VAULT;1.1;AES256\r\n"
            "          62313365396662343061393464336163\r\n          3966\r\nnext: 1\r\n",
            "db_password: !vault |\r\n          <secret>\r\nnext: 1\r\n",
        ),
        # a triple-quoted value to its closing quotes, across lines
        ('password = """S3cret\npass phrase"""\nx = 1', 'password = """<secret>"""\nx = 1'),
        # YAML: a quoted key, a value on the next line, an alias in a flow mapping
        ('"password": |\n  S3cretPassw0rd\nuser: bob\n', '"password": |\n  <secret>\nuser: bob\n'),
        ("password:\n  S3cretPassw0rd\nuser: bob\n", "password:\n  <secret>\nuser: bob\n"),
        ("password: &pw\n  hunter2hunter2\n", "password: &pw\n  <secret>\n"),
        (
            "db: {user: bob, password: *db_pw}\ndefaults: &db_pw hunter2hunter2\n",
            "db: {user: bob, password: *db_pw}\ndefaults: &db_pw <secret>\n",
        ),
        # .NET with the value first or unquoted; an account's password; a setter's second argument; prose
        ('<add value="abcd1234efgh5678" key="ApiKey"/>', '<add value="<secret>" key="ApiKey"/>'),
        ('<add key="ApiKey" value=abcd1234efgh5678 />', '<add key="ApiKey" value=<secret> />'),
        ('db_pass = "hunter22"', 'db_pass = "<secret>"'),
        ('dbPass = "hunter22"', 'dbPass = "<secret>"'),
        ("dbPw: hunter22", "dbPw: <secret>"),
        ('client.set_password(user, "hunter22")', 'client.set_password(user, "<secret>")'),
        ("the password for root is hunter22", "the password for root is <secret>"),
        # a YAML list under a credential name, the `-` indented or not, each item alone
        ("password:\n  - S3cret99\n", "password:\n  - <secret>\n"),
        ("password:\n- S3cret99\nuser: bob\n", "password:\n- <secret>\nuser: bob\n"),
        ('db:\n  password:\n    - "S3cret99"\n    - null\n', 'db:\n  password:\n    - "<secret>"\n    - null\n'),
        # a flow mapping, and a block scalar opened in one
        ("db: {password: hunter2x, user: bob}", "db: {password: <secret>, user: bob}"),
        ("db: {password: |\n    hunter2x\n  }\n", "db: {password: |\n    <secret>\n  }\n"),
        # `user:password` where the context makes it a credential
        ("curl -u admin:hunter22 https://ci/api", "curl -u admin:<secret> https://ci/api"),
        ('curl -s -u "admin:hunter22" https://ci/api', 'curl -s -u "admin:<secret>" https://ci/api'),
        ("curl --user admin:secret https://ci/api", "curl --user admin:<secret> https://ci/api"),
        ("wget --user admin:hunter22", "wget --user admin:<secret>"),
        ("http://admin:hunter22@host", "http://admin:<secret>@host"),
        # base64 of 44 characters under a name that says AWS
        ("aws: 16sMvlMk74wsRFoe4GKhhVSvAeGdGVnMf6RJoQ8xowo=", "aws: <secret>"),
        ("aws_secret: 16sMvlMk74wsRFoe4GKhhVSvAeGdGVnMf6RJoQ8xowo=", "aws_secret: <secret>"),
        # an unquoted dotted value with a digit outside code; an unquoted argument; short passwords
        ("password = my_db.pass_01", "password = <secret>"),
        ("password(hunter2x)", "password(<secret>)"),
        ("password: abc12", "password: <secret>"),
        ("secret: ab12", "secret: <secret>"),
    ],
)
def test_a_credential_in_a_leaked_form_is_replaced_whole(text, redacted):
    out, counts = redact(text)
    assert out == redacted and counts, out


KEPT = [
    # UI strings and messages about a password
    "forgot_password: Forgot your password?",
    'password_label: "Password"',
    "# set the password here",
    "reset_password_url: /reset",
    'prompt_password("Enter password: ")',
    "the password is incorrect",
    "password is 12345678 characters?",
    "passwd root",
    # RTL names
    "wire password_valid;",
    "assign pw_ok = pw_a & pw_b;",
    "wire [7:0] pw_data;",
    ".pw(pw_sig),",
    "password: uint64",
    # paths and references
    "PWD=/home/alice",
    "cd $PWD/build",
    "password: ~/secrets/db.txt",
    'password: "${{ secrets.DB_PASSWORD }}"',
    "password: |",
    "password: *db_pw",
    # code: an identifier outside a config file, one ending in the name's own word, a trailing comma
    "password = default_password",
    "  password: default_password",
    "  password: config_password,",
    "login(user, password)",
    "PASS=1",
    # pass, pw and pwd as a test's result, a pulse width, a signal, a Tcl or shell variable
    "PASS: No warnings",
    "PASS: all 128 vectors matched",
    "PASS: rv32ui-p-add",
    "PASS: test_uart_1",
    "  PASS: Both ICGs properly connected to CTS tree",
    "  PASS: pass_count2 <= pass_count2 + 1;",
    "  PW: done with setup",
    "Pass: no errors found",
    "pass: run the flow again",
    "PW: 1024x8",
    "PW: 100MHz",
    "assign pw = cnt123;",
    "assign pass = cmp_out2;",
    "  pass = pass1_en;",
    "pw = pw1 ^ pw2",
    'pass = "stage1"',
    "set pw 32bits",
    "set PWD build1x",
    "set PWD $::env(HOME)/flow2",
    "setenv PWD build_run2",
    "export PWD=build2x",
    "PWD=build_dir2",
    "pwd: build2",
    # a `[1]` footnote or an indented `[a]` is no ini section
    "[1]\nsecret_key = round_key_reg\n",
    "  [a]\nDB_PASSWORD = other_module.value",
    "[1]\n  pass = stage_two",
    # prose after a dash, a secret's name passed on, a format string's placeholder
    "Each pw - 32bits of the key",
    'use_token("GITHUB_TOKEN2")',
    'set_secret("AES_KEY_BITS_128")',
    '"Server=db;Password={password}"',
    # near a bare AWS key: hashes, base64 of text, identifiers, paths
    'sha = "da39a3ee5e6b4b0d3255bfef95601890afd80709"',
    "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
    "// base64 vector: TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuIFll",
    "AxiLiteRegisterFileWithParity32bitWidth1 in the aws-fpga shell",
    "src/main/java/com/ExampleCo/Module1/Foo2",
    "# aws docs: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    # placeholders, references, settings and types under a password's name
    "password_min_length: 8",
    "password: null",
    "password: None",
    'password: ""',
    "password: <redacted>",
    "password: ${DB_PASSWORD}",
    "password: {{ vault_pw }}",
    "password: str",
    "password: md5",
    "password: sha256",
    "password: utf8",
    "password:\n  - null\n",
    # a letters-only word after pass, pw or pwd; Verilog and Tcl
    "pw: hunter",
    "pass: abcdef",
    "assign pw = a & b;",
    "set PWD [pwd]",
    # `a:b` that is no credential: a bus range, a port, a time, docker's uid:gid, a reference, a refspec
    "wire [7:0] data;",
    "connect module:port",
    "time: 10ns",
    "docker run --user 1000:1000 img",
    "docker run --user app:app img",
    "curl -u $USER:$TOKEN https://ci/api",
    "git push -u origin main:main",
    # calls whose argument is a variable, a getter's, a Verilog port connection
    "hash_password(user_pw)",
    "check_password(pw1234)",
    ".password(key1234),",
    # base64 near `aws` that is text or has one case
    "aws: TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuIFllcw==",
]


@pytest.mark.parametrize("line", KEPT)
def test_ui_text_rtl_paths_and_code_are_kept(line):
    assert redact(line) == (line, {})


def test_a_yaml_anchor_before_a_quoted_password_is_counted_as_an_assignment():
    assert redact("Password: &PW 'hunter2hunter2'\nother: *PW\n") == (
        "Password: &PW '<secret>'\nother: *PW\n",
        {"assigned_secret": 1},
    )


@pytest.mark.parametrize(
    "text",
    [
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY " * 5_000),  # every token searches its neighbourhood
        "password: |\n" * 20_000 + "  x\n",
        "a: &x " * 40_000,
        "<add key='ApiKey' " + "x" * 200_000,
        "login(" * 40_000,
        "the password is " * 15_000,
        "$ANSIBLE_VAULT;1.1\n" + "0a" * 100_000 + "g",
        'password = """a' * 40_000,
        'password = """' + "a\n" * 100_000,
        "<add " + 'value="x" ' * 40_000,
        "password:\n" * 40_000 + "  x\n",
        "[a]\npassword = x\n" * 20_000,
        "password:\n" * 40_000 + "  - x\n",
        "curl -u " * 40_000,
        "--user a:" * 40_000,
        "--user=a:" * 20_000,  # each `a:` a password's start: an unbounded one scanned the run to its end
        "a: {" + "x," * 100_000,
        "password(" * 40_000,
        "aws: " * 50_000,
    ],
    ids=[
        "aws",
        "yaml-blocks",
        "anchors",
        "add-key",
        "logins",
        "sentences",
        "vault",
        "triple-quotes",
        "open-triple-quote",
        "add-values",
        "next-lines",
        "ini",
        "lists",
        "curl",
        "users",
        "users-unspaced",
        "flow",
        "calls",
        "aws-names",
    ],
)
def test_the_new_forms_take_linear_time(text):
    start = time.process_time()
    redact(text)
    assert (
        time.process_time() - start < 5
    )  # a guard against quadratic time, not a benchmark (CPU-s: a loaded machine does not count)
