"""JSON escaped in a string, escaped again (kubectl's last-applied-configuration inside an annotation), and a
document of blanks: a credential in the first at any depth is redacted, the second is read in linear time."""

import ast
import json
import time
from pathlib import Path

from chipadapt.curation import redaction_forms, redaction_needs
from chipadapt.curation.redaction import redact


def _nested(obj: dict, depth: int) -> str:
    """`obj` as JSON written as a string inside JSON `depth` times."""
    text = json.dumps(obj)
    for _ in range(depth):
        text = json.dumps({"v": text})
    return text


def test_password_in_json_escaped_at_any_depth_is_redacted_keys_kept():
    obj = {"db": {"password": "S3cr3tPass99", "host": "db.local"}}
    for depth in (1, 2, 3):
        out, counts = redact(_nested(obj, depth))
        assert "S3cr3tPass99" not in out
        assert counts == {"assigned_secret_escaped": 1}
        # the structure stays: undo the escaping, and the key is where it was with the placeholder as its value
        inner = out
        for _ in range(depth):
            inner = json.loads(inner)["v"]
        assert json.loads(inner) == {"db": {"password": "<secret>", "host": "db.local"}}


def test_secret_in_last_applied_configuration_twice_escaped():
    secret = {"kind": "Secret", "data": {"password": "UzNjcmV0UGFzczk5"}}
    annotation = {"metadata": {"annotations": {"last-applied-configuration": json.dumps(secret)}}}
    out, _ = redact(json.dumps({"a": json.dumps(annotation)}))
    assert "UzNjcmV0UGFzczk5" not in out


def _inner(text: str, depth: int):
    for _ in range(depth):
        text = json.loads(text)["v"]
    return json.loads(text)


def test_escaped_value_with_a_quote_in_it_is_redacted_to_its_closing_quote():
    # `\\\"` at depth 1 is a quote of the value's text: the value runs on to the quote of its own depth
    for depth in (1, 2, 3):
        text = _nested({"api_key": 'ab"cdefgh12345678', "host": "h"}, depth)
        out, counts = redact(text)
        assert "cdefgh12345678" not in out and counts == {"assigned_secret_escaped": 1}
        assert _inner(out, depth) == {"api_key": "<secret>", "host": "h"}


def test_escaped_value_ending_in_a_backslash_is_redacted():
    # its closing quote follows the value's own backslashes, a longer run than the name's quote
    for depth in (1, 2, 3):
        for value in ("S3cretPass99\\", "S3cret\\Pass99\\\\", 'S3cret"Pass99\\'):
            out, counts = redact(_nested({"password": value, "user": "bob"}, depth))
            assert counts == {"assigned_secret_escaped": 1}, (depth, value)
            assert _inner(out, depth) == {"password": "<secret>", "user": "bob"}


def test_a_list_under_a_credential_name_in_escaped_json_is_redacted_item_by_item():
    obj = {"passwords": ["S3cretPass99", 'hunter2"x9Z'], "user": "bob"}
    for depth in (1, 2, 3):
        for indent in (None, 2):
            text = json.dumps(obj, indent=indent)
            for _ in range(depth):
                text = json.dumps({"v": text})
            out, counts = redact(text)
            assert counts == {"assigned_secret_escaped": 2}, (depth, indent)
            assert _inner(out, depth) == {"passwords": ["<secret>", "<secret>"], "user": "bob"}


def test_an_escaped_list_of_references_words_or_variable_names_is_kept():
    # a tokenizer's vocabulary, a model config's stop words, the names of CI secrets: lists of names
    kept = {
        "passwords": ["{{ .Values.pw }}", "${DB_PASSWORD}"],
        "tokens": ["\u0120Initialize", "\u0120endmodule", "32'hDEADBEEF", "always_ff", "<|endoftext|>", "posedge_clk1"],
        "stop_tokens": ["</s>", "\n\nHuman:", "###Instruction"],
        "input_tokens": ["module", "(", "CounterTop", "DataWidth32", "\u0120always_ff_posedge1"],
        "secret_keys": ["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD_PROD"],
        "secrets": ["GITHUB_TOKEN", "NPM_TOKEN"],
        "api_tokens": [],
    }
    for depth in (1, 2, 3):
        for indent in (None, 2):
            for obj in [kept, {"model": {"type": "BPE"}, "tokens": ["ModuleDecl", "PortList99", "Identifier"]}]:
                text = json.dumps(obj, indent=indent)
                for _ in range(depth):
                    text = json.dumps({"v": text})
                assert redact(text) == (text, {}), (depth, indent, obj)
    # a notebook's one-line cell that holds such a dict
    cell = "tok = " + json.dumps({"tokens": ["\u0120Initialize", "\u0120endmodule"]}) + "\n"
    text = json.dumps({"cells": [{"source": [cell, "x"]}]})
    assert redact(text) == (text, {})


def test_a_secret_in_a_plural_names_escaped_list_is_redacted_its_names_kept():
    github = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    obj = {
        "tokens": ["<pad>", github, "tok_9f8e7d6c5b4a", "endmodule"],
        "secrets": ["GITHUB_TOKEN", "S3cretPass99"],
        "secret_keys": ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "DB_PASSWORD_PROD"],
    }
    for depth in (1, 2):
        out, counts = redact(_nested(obj, depth))
        assert counts == {"assigned_secret_escaped": 4}, depth
        assert _inner(out, depth) == {
            "tokens": ["<pad>", "<secret>", "<secret>", "endmodule"],
            "secrets": ["GITHUB_TOKEN", "<secret>"],
            "secret_keys": ["<secret>", "DB_PASSWORD_PROD"],
        }


def test_an_item_of_a_singular_names_escaped_list_is_judged_as_its_value():
    names = ("password", "pass", "pw", "token", "secret", "credentials", "api_key", "secret_key")
    values = ("S3cretPass99", "TestUart01", "GITHUB_TOKEN", "<|endoftext|>", "hunter", "abc12", "32'hDEADBEEF")
    for name in names:
        for value in values:
            alone = bool(redact(_nested({name: value}, 1))[1])
            assert bool(redact(_nested({name: [value, "x"]}, 1))[1]) == alone, (name, value)


def test_numbers_null_and_booleans_in_an_escaped_list_are_read_past():
    obj = {"password": [5, "S3cr3tPass99", None, True, False, -1.5e-3], "user": "bob"}
    for depth in (1, 2):
        for indent in (None, 2):
            text = json.dumps(obj, indent=indent)
            for _ in range(depth):
                text = json.dumps({"v": text})
            out, counts = redact(text)
            assert counts == {"assigned_secret_escaped": 1}, (depth, indent)
            assert _inner(out, depth) == {"password": [5, "<secret>", None, True, False, -1.5e-3], "user": "bob"}


def test_a_secret_value_after_a_long_run_of_backslashes_is_read_in_linear_time():
    # the closing quote of a quoted value was compared against the run at each character from the end: at
    # 80,000 backslashes 2.2 s, quadratic
    k = 200_000
    for text in (
        "stringData:\n  p: " + "\\" * k + '"' + "\\" * (k - 1) + "x\n",
        "kind: Secret\ndata:\n  p: " + "\\" * k + "'" + "\\" * (k - 1) + "x\n",
    ):
        start = time.process_time()
        out, counts = redact(text)
        assert time.process_time() - start < 5 and counts == {"k8s_secret_data": 1}


def test_escaped_assignments_and_lists_are_read_in_linear_time():
    # the escaped forms compare runs of backslashes with the name's quote: each run is read a few times, no more
    k = 40_000
    for text in (
        "\\" * k + '"password' + "\\" * k + '":' + "\\" * k + '"x' + "\\" * (k - 1) + '"\n',
        '\\"password\\": \\"' + 'a\\\\\\"pw\\\\\\":\\\\\\"' * (k // 4) + "\n",
        '\\"password\\": [' + '\\"abc\\", ' * (k // 2),
        '\\"password\\": [' + "1, \\n" * (k // 2),
        '\\"tokens\\": [' + '\\"\\\\u0120abc\\", ' * (k // 4) + '\\"x\\"]',
        '\\"tokens\\": [\\"' + "\\\\u0120" * k + '\\"]',
        '\\"password\\": \\"' + "\\\\\\\\" * k + '\\\\\\"',
    ):
        start = time.process_time()
        redact(text)
        assert time.process_time() - start < 5


def test_indentation_is_read_once():
    # A pattern that gives a line's indentation back a blank at a time tries the rest of it at each: a line
    # of a megabyte of blanks was searched a million times over by each of these.
    patterns = [getattr(redaction_forms, name) for name in ("YAML_LIST", "YAML_FLOW_LIST", "YAML_NEXT_LINE")]
    for pattern in [*patterns, redaction_forms.YAML_ALIAS, redaction_forms.ASSIGNMENTS["assigned_secret_line"]]:
        line_start = pattern.pattern.split("^", 1)[1]
        assert "[ \\t]*+" in line_start[: line_start.index("]") + 3], pattern.pattern[:60]


def _test_strings() -> list[str]:
    """Every string the redaction tests write, credentials and code that is none."""
    strings = []
    for path in sorted(Path(__file__).parent.glob("test_*redact*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 5000:
                strings.append(node.value)
    return strings


def test_what_a_pattern_needs_is_in_every_text_it_matches():
    # redaction skips a pattern in a text without one of its words: a word that a match may lack would let
    # that match through unredacted.
    strings = _test_strings()
    assert len(strings) > 500
    for text in strings + [s.upper() for s in strings] + [s.title() for s in strings]:
        lowered = text.lower()
        for pattern, needs in redaction_needs.NEEDS.items():
            if pattern.search(text):
                assert any(word in lowered for word in needs), (pattern.pattern[:60], text[:80])


def test_a_document_of_blanks_is_kept_and_a_credential_after_it_found():
    blanks = " \t\n" * 20_000
    assert redact(blanks) == (blanks, {})
    out, counts = redact(blanks + "password: S3cr3tPass99\n")
    assert out == blanks + "password: <secret>\n" and counts == {"assigned_secret": 1}


def _annotated(obj: dict, depth: int) -> str:
    """`obj` in a last-applied-configuration annotation, in JSON escaped `depth - 1` more times."""
    annotation = {"metadata": {"annotations": {"last-applied-configuration": json.dumps(obj)}}}
    return _nested(annotation, depth - 1)


def _unnest(text: str, depth: int) -> dict:
    obj = json.loads(text)
    for _ in range(depth - 1):
        obj = json.loads(obj["v"])
    return json.loads(obj["metadata"]["annotations"]["last-applied-configuration"])


def test_every_value_of_a_secret_escaped_twice_or_more_is_redacted_keys_kept():
    secret = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"username": "YWRtaW4=", "tls.key": "TFMwdA=="}}
    for depth in (1, 2, 3):
        out, counts = redact(_annotated(secret, depth))
        assert counts == {"k8s_secret_data": 2}, depth
        assert _unnest(out, depth)["data"] == {"username": "<secret>", "tls.key": "<secret>"}
        assert _unnest(out, depth)["metadata"] == {"name": "db"}


def test_a_config_map_escaped_twice_keeps_its_data():
    config_map = {"kind": "ConfigMap", "data": {"username": "YWRtaW4=", "mode": "fast"}}
    text = _annotated(config_map, 2)
    assert redact(text) == (text, {})


def test_a_kind_in_a_string_of_the_escaped_json_is_no_key():
    # `kind: Secret` as the text of a string one level deeper than the `data` is not the object's kind
    obj = {"note": json.dumps({"kind": "Secret"}), "data": {"username": "YWRtaW4="}}
    text = _annotated(obj, 2)
    assert redact(text) == (text, {})
