"""Redaction, from a review of its newer forms: each stays within what it is about (a curl command, the
key's own YAML list, an AWS secret's name, a password and not a process node or a signal), closes the
leaks next to them, and runs in time linear in the text."""

import time

import pytest

from chipadapt.curation.redaction import redact


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        # curl: a quoted pair to its closing quote; a reference as the user, not as the password
        ("curl -u 'admin:S3cret Pass9' https://x", "curl -u 'admin:<secret>' https://x"),
        ('curl -u "$CI_USER:S3cretPass9" https://x', 'curl -u "$CI_USER:<secret>" https://x'),
        ("curl -u ${USER}:S3cretPass9 https://x", "curl -u ${USER}:<secret> https://x"),
        ("curl -s 'https://x?a=1&b=2' -u admin:S3cretPass9", "curl -s 'https://x?a=1&b=2' -u admin:<secret>"),
        # the key's own list, under a list item's key too; a plural name; a flow list
        (
            "users:\n  - password:\n    - abc12345\n  - name: bob\n",
            "users:\n  - password:\n    - <secret>\n  - name: bob\n",
        ),
        ("passwords:\n  - S3cretPass9\n  - hunter2x\n", "passwords:\n  - <secret>\n  - <secret>\n"),
        ("password: [S3cretPass9, hunter2x]\n", "password: [<secret>, <secret>]\n"),
        # Ansible, .env, Kubernetes, docker, Slack app tokens, a URL's query
        ("ansible_become_pass: S3cretPass9", "ansible_become_pass: <secret>"),
        ("host1 ansible_ssh_pass=S3cretPass9", "host1 ansible_ssh_pass=<secret>"),
        ("DB_PASS=hunter2", "DB_PASS=<secret>"),
        ("MYSQL_PWD=abc123", "MYSQL_PWD=<secret>"),
        (
            'env:\n  - name: DB_PASSWORD\n    value: "S3cretPass9"\n',
            'env:\n  - name: DB_PASSWORD\n    value: "<secret>"\n',
        ),
        ("docker login -u alice -p S3cretPass9 registry", "docker login -u alice -p <secret> registry"),
        ("xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef", "<secret>"),
        (
            "jdbc:postgresql://db/eda?password=S3cretPass9&ssl=true",
            "jdbc:postgresql://db/eda?password=<secret>&ssl=true",
        ),
        # kept redacted: a password-like word, a value's words joined in a README, an AWS secret's full name
        ("password: test1", "password: <secret>"),
        ("password = my_db.pass_01", "password = <secret>"),
        (
            "AWS_SECRET_ACCESS_KEY: 16sMvlMk74wsRFoe4GKhhVSvAeGdGVnMf6RJoQ8xowo=",
            "AWS_SECRET_ACCESS_KEY: <secret>",
        ),
    ],
)
def test_a_credential_next_to_the_reviewed_forms_is_replaced(text, redacted):
    assert redact(text)[0] == redacted


def test_each_replaced_list_item_is_counted():
    assert redact("password:\n  - S3cret99\n  - hunter2x\n")[1] == {"yaml_list_secret": 2}
    assert redact("password: [S3cret99, hunter2x]\n")[1] == {"yaml_list_secret": 2}


@pytest.mark.parametrize(
    "text",
    [
        # another command after curl's: sort's, uniq's `-u`
        "curl https://x -o a.txt; sort -u a:b",
        "curl -s http://x | tar -x; uniq -u log:warn1",
        "curl https://x && uniq -u log:warn1",
        'curl -u "$CI_USER:$CI_TOKEN" https://x',
        # YAML items that are not the key's list: a sibling list item, a mapping, Markdown bullets
        "users:\n  - password:\n      - null\n  - name: bob\n",
        "api_key:\n  - name: prod\n    expires: 2026-01-01\n",
        "password:\n  - required\n  - min_length: 8\n",
        "Password:\n- must be at least 12 characters long\n- should contain a digit\n",
        "secret:\n  - v1alpha1\n  - v2beta1\n",
        # a signal or a variable passed to a function named after a password
        "wire password_ok = password(data_in1);",
        "if (password(data12))",
        "password(clk1)",
        "set_password(user1)",
        "reset_password(buf2)",
        "compute_password(seed0)",
        "gen_passphrase(rng0)",
        # a name that starts with aws and says something else
        "aws_sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "aws_checksum: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "aws-fpga: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "aws_ami_digest= q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0X1c=",
        # a process node, a memory standard, a core, an API version
        "secret: tsmc7",
        "secret: asap7",
        "secret: gf180",
        "secret: sky130",
        "secret: ddr4",
        "secret: lpddr5",
        "secret: rv32imc",
        "  secret: k8s1",
        # an attribute in a snippet with no other sign of code
        "password = args.pw2",
        "db_password = db_cfg.pw2",
        "password = pw_list.item1",
    ],
)
def test_text_beside_the_reviewed_forms_is_kept(text):
    assert redact(text) == (text, {})


@pytest.mark.parametrize(
    "text",
    [
        "--user=a:" * 20_000,
        "--proxy-user='a:" * 20_000,
        "--user=" + "a-" * 100_000,
        "curl " * 40_000,
        "curl -u ${A}:" * 20_000,
        "- password:\n    - " * 20_000,
        "password: [" + "a1," * 60_000,
        "docker login " * 20_000,
        "- name: DB_PASSWORD\n  value: " * 8_000,
        "?password=a&" * 20_000,
    ],
    ids=["users", "proxy-users", "user-dashes", "curls", "curl-refs", "lists", "flow-list", "logins", "env", "query"],
)
def test_the_reviewed_forms_take_linear_time(text):
    start = time.process_time()
    redact(text)
    assert (
        time.process_time() - start < 5
    )  # a guard against quadratic time, not a benchmark (CPU-s: a loaded machine does not count)
