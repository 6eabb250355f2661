"""A folder of a user's own docs cut into passages: secrets redacted, exact duplicates dropped, machine-like
files skipped, one dominant file warned about, non-UTF-8 files named or repaired (retrieval/passage_cleaning.py)."""

import base64
import logging
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.build import load_passages, load_passages_report

REPO = Path(__file__).resolve().parents[1]


def preset(name: str) -> dict:
    """conf/passages/NAME.yaml as Hydra composes it: with the settings it includes from conf/passages/common/."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose(f"passages/{name}").passages)


def folder_build(docs: Path, **overrides) -> dict:
    """conf/passages/folder.yaml, as a user's command line sets it."""
    build = preset("folder")
    build["sources"]["docs"]["path"] = str(docs)
    return {**build, **overrides}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "onboarding.md").write_text(
        "# Onboarding\n\nAsk IT for a farm account. The service account is `pdbot`.\npassword: hunter2x\n\n"
        "## Tools\n\nSource the setup script to get Zephyr on your PATH.\n"
    )
    placer = "# Zephyr placer\n\nZephyr places standard cells with a density target of 0.7 by default.\n"
    (root / "zephyr_placer.md").write_text(placer)
    (root / "sub" / "zephyr_placer_copy.md").write_text(placer.replace(" by", "  by"))  # whitespace aside, a copy
    (root / "timing.md").write_text("# Timing\n\nSign off at the slow corner with OCV derates applied.\n")
    return root


def test_secret_redacted_by_default_with_ids_kept_and_counts_recorded(docs: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        passages, report = load_passages_report(None, folder_build(docs))
    text = "\n".join(p.text for p in passages)
    assert "hunter2x" not in text and "password: <secret>" in text
    assert sum(report.redactions.values()) == 1 and report.redacted_passages == 1
    assert "hunter2x" not in str(report.to_json()) and "hunter2x" not in caplog.text
    assert "redacted 1" in caplog.text
    kept = load_passages(None, folder_build(docs, redact=False))
    assert "hunter2x" in "\n".join(p.text for p in kept)  # the key turns it off
    assert [p.id for p in kept] == [p.id for p in passages]  # ids do not move with redaction


def test_private_key_split_across_passages_is_redacted_whole(tmp_path: Path) -> None:
    rng = random.Random(0)
    key_lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(20)]
    body = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(key_lines) + "\n-----END RSA PRIVATE KEY-----\n"
    (tmp_path / "keys.md").write_text("# Deploy box\n\nThe deploy key, kept here for now:\n\n" + body)
    passages, report = load_passages_report(None, folder_build(tmp_path))
    text = "\n".join(p.text for p in passages)
    assert not any(line in text for line in key_lines)
    assert report.recut_documents == ["keys.md"]


def test_exact_duplicates_dropped_first_in_path_order_kept(docs: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        passages, report = load_passages_report(None, folder_build(docs))
    ids = [p.id for p in passages]
    assert "docs:zephyr_placer.md#0" in ids and "docs:sub/zephyr_placer_copy.md#0" not in ids
    assert report.duplicates == {"docs:sub/zephyr_placer_copy.md#0": "docs:zephyr_placer.md#0"}
    assert "docs:sub/zephyr_placer_copy.md#0" in caplog.text
    both = load_passages(None, folder_build(docs, drop_duplicates=False))
    assert "docs:sub/zephyr_placer_copy.md#0" in [p.id for p in both]


def test_machine_like_file_skipped_and_named_unless_kept(docs: Path, caplog) -> None:
    (docs / "dump.txt").write_text(base64.b64encode(random.Random(1).randbytes(30000)).decode())
    with caplog.at_level(logging.WARNING):
        passages, report = load_passages_report(None, folder_build(docs))
    assert not any(p.source == "docs:dump.txt" for p in passages)
    assert report.machine_like == {"docs:dump.txt": "long_lines"} and "docs:dump.txt" in caplog.text
    kept = load_passages(None, folder_build(docs, keep_machine_like=True))
    assert any(p.source == "docs:dump.txt" for p in kept)


def test_only_machine_like_files_is_an_error_saying_so(tmp_path: Path) -> None:
    (tmp_path / "dump.txt").write_text("ab" * 20000)
    with pytest.raises(ChipadaptError, match="machine-like files skipped"):
        load_passages(None, folder_build(tmp_path))


def test_one_file_giving_most_passages_is_named_in_a_warning(docs: Path, caplog) -> None:
    words = "buffer cell strap clock inverter macro skew via pin net slack".split()
    rng = random.Random(2)
    # Sentences (a word list on one line without them is machine-like: tests/test_word_salad.py).
    sentences = (" ".join(rng.choice(words) for _ in range(12)).capitalize() + "." for _ in range(250))
    (docs / "salad.txt").write_text(" ".join(sentences))
    with caplog.at_level(logging.WARNING):
        passages, report = load_passages_report(None, folder_build(docs))
    name, count, total = report.dominant
    assert name == "docs:salad.txt" and count > total / 2 and total == len(passages)
    assert "docs:salad.txt gave" in caplog.text


def test_non_utf8_files_named_few_bad_bytes_repaired(docs: Path, caplog) -> None:
    (docs / "mixed_bad.md").write_bytes(b"# Notes\n\nThe caf\xe9 floorplan review is on Monday at ten.\n")
    (docs / "shift_jis.txt").write_bytes("配置配線の手順書です。タイミング収束を確認します。".encode("shift_jis"))
    with caplog.at_level(logging.WARNING):
        passages = load_passages(None, folder_build(docs))
    assert any(p.source == "docs:mixed_bad.md" and "caf\ufffd floorplan" in p.text for p in passages)
    assert not any(p.source == "docs:shift_jis.txt" for p in passages)
    assert "not UTF-8 text (shift_jis.txt)" in caplog.text and "U+FFFD (mixed_bad.md)" in caplog.text
    strict = load_passages(None, folder_build(docs, undecodable_share=0))
    assert not any(p.source == "docs:mixed_bad.md" for p in strict)


def test_every_passages_preset_sets_the_cleaning_keys() -> None:
    from chipadapt.retrieval.build import CLEANING_KEYS

    for path in sorted((REPO / "conf/passages").glob("*.yaml")):
        assert set(CLEANING_KEYS) <= set(preset(path.stem)), path.name


def test_each_cutting_and_cleaning_key_has_one_default() -> None:
    """Before, the 8 keys were repeated in each of the three presets; now conf/passages/common/default.yaml sets
    them and a preset only where it differs (openroad_docs keeps repeated passages its questions name)."""
    common = OmegaConf.load(REPO / "conf/passages/common/default.yaml")
    keys = set(common) - {"sources"}
    assert len(keys) == 8
    for path in sorted((REPO / "conf/passages").glob("*.yaml")):
        assert set(OmegaConf.load(path)) & keys <= {"drop_duplicates"}, path.name
    assert preset("openroad_docs")["drop_duplicates"] is False and preset("folder")["drop_duplicates"] is True
