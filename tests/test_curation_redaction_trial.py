"""Redaction, from a new user's trial: credentials that survived whole, and code that must survive."""

import json

import pytest
from conftest import CONF
from omegaconf import OmegaConf

from chipadapt.curation.filters import redact
from chipadapt.curation.run import curate


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # a value with one character outside [A-Za-z0-9/+_-.] was left whole
        ('password = "Tr0ub4dor&3xyzLong"', "Tr0ub4dor"),
        ('export DB_PASSWORD="S3cure!Passw0rd#2024"', "S3cure"),
        ("DB_PASSWORD=S3cure!Passw0rd2024", "S3cure"),
        ("token: 'ZmFrZXRva2VuMTIzNDU2Nzg5MA=='", "ZmFrZXRva2Vu"),
        ('my %cfg = (password => "P@ss w0rd with spaces!");', "w0rd"),
        # Tcl through the env array, and csh
        ("set ::env(LM_LICENSE_PASSWORD) Qwerty123456789", "Qwerty"),
        ("set env(SNPSLMD_TOKEN) abc123def456ghi789", "abc123"),
        ("set api_key {k3y with $pecial chars}", "k3y"),
        ("setenv LM_PASSWORD Xyz987654321abc", "Xyz987"),
        # an UPPER_CASE *_KEY
        ("LICENSE_KEY=0123456789abcdef0123", "0123456789"),
        # published formats, under names that say nothing
        ("gitlab = glpat-AbCdEfGhIjKlMnOpQrSt", "glpat-"),
        ("stripe = sk_live_51HabcdefGHIJKLmnopqrstuv", "sk_live"),
        ("jwt = eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3", "eyJ"),
        ('db_url = "postgres://admin:Pa55w0rdLongEnough@db.chipco.internal:5432/eda"', "Pa55w0rd"),
    ],
)
def test_a_credential_is_replaced_whole(line, secret):
    text, counts = redact(line)
    assert secret not in text and "<secret>" in text and counts, text


def test_a_private_key_without_its_end_line_is_replaced_to_the_end():
    text, counts = redact("before\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\nAASCBKcwggSjAgEAAoIB\n")
    assert text == "before\n<secret>" and counts == {"private_key": 1}


FALSE_POSITIVES = [
    # Verilog
    "input wire [127:0] key,",
    "assign token = fifo_out[7:0];",
    "assign secret_key = round_key_reg ^ mask;",
    "assign key_valid = token_in & ~busy;",
    "localparam KEY_WIDTH = 128;",
    # Tcl
    "set token [lindex $tokens 0]",
    "set api_key $env(API_KEY)",
    'set password_file "$env(HOME)/.pw"',
    "foreach key [dict keys $d] {",
    "dict set cfg key $value",
    # Python, YAML, JSON, shell
    "for key, value in d.items():",
    "key = value",
    "d[key] = token",
    "token = tokens[i]",
    'password = getpass.getpass("Password: ")',
    'api_key = os.environ["OPENAI_API_KEY"]',
    "token: Optional[str] = None",
    "if password == expected_password:",
    'pad_token = "<|endoftext|>"',
    'chat_template_token = "assistant_response"',
    "password = default_password",
    '"password": "{{ vault_db_password }}"',
    '"password": {"type": "string", "minLength": 8}',
    "primary_key=True,",
    "tokenizer.pad_token = tokenizer.eos_token",
    "credentials = load_credentials(path)",
    "export API_TOKEN=$VAULT_TOKEN",
    # prose
    "The password: must be at least twelve characters long",
    "Each token: one byte of the stream",
    # curation's own output, curated again
    'password = "<secret>"',
]


@pytest.mark.parametrize("line", FALSE_POSITIVES)
def test_code_and_prose_that_name_a_credential_are_kept(line):
    assert redact(line) == (line, {})


def test_an_address_in_a_file_name_is_redacted_in_the_corpus_and_the_report(tmp_path):
    """`docs/alice.smith@chipco.com_notes.md` reached the corpus's `path` field and the report's examples."""
    docs = tmp_path / "repo" / "docs"
    docs.mkdir(parents=True)
    (docs / "alice.smith@chipco.com_notes.md").write_text("# Notes\nThe arbiter grants the bus round robin.\n")
    # a second person's notes: their redacted paths must stay two ids (deduplication indexes by path)
    (docs / "bob.jones@chipco.com_notes.md").write_text("# Notes\nThe FIFO is sixteen entries deep, one clock.\n")
    (docs / "carol@chipco.com_scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))  # skipped, but named
    cfg = OmegaConf.load(CONF / "data" / "curate" / "sample.yaml")
    cfg.inputs, cfg.workers = [str(tmp_path / "repo")], 1
    out = tmp_path / "out"
    report = curate(cfg, out)

    rows = [json.loads(line) for line in (out / "handwritten" / "part-00000.jsonl").open()]
    assert len(rows) == 2 and len({row["path"] for row in rows}) == 2
    assert all(row["path"].startswith("docs/<email-") and row["path"].endswith("_notes.md") for row in rows)
    written = (out / "curation_report.json").read_text() + "".join(row["path"] for row in rows)
    assert "@" not in written and "alice" not in written and "carol" not in written
    assert report["skipped_examples"]["binary"][0].startswith("docs/<email-")
    assert report["redactions"] == {"path_email": 2}
    # A rerun writes the same tags (the key is this machine's, kept in the cache), so its output is the same.
    again = tmp_path / "again"
    curate(cfg, again)
    assert (again / "handwritten" / "part-00000.jsonl").read_text() == (
        out / "handwritten" / "part-00000.jsonl"
    ).read_text()
