"""Curation's report adds up: every file seen is read or skipped for a counted reason (symbolic links
included), and a .jsonl input is read as records, one document per line, counted as such."""

import io
import json
import logging
import os
import re
import stat
import tarfile
import zipfile

import pytest
from test_curation import RTL, config, records

from chipadapt.curation.run import SKIPS_WORTH_A_WARNING, curate
from chipadapt.errors import ChipadaptError

SDC = "create_clock -name clk -period 10 [get_ports clk]\nset_input_delay 1 -clock clk [all_inputs]\n"


def assert_files_add_up(report):
    assert report["files_seen"] == report["files_read"] + sum(report["skipped"].values())


def assert_documents_add_up(report):
    documents = report["files_read"] - report["records"]["files"] + report["records"]["read"]
    kept = documents - sum(report["records"]["skipped"].values())
    assert kept == report["documents_written"] + report["duplicates"]["exact"] + report["duplicates"]["near"]


def test_symlinks_are_counted_as_skipped_and_named_in_the_report_and_log(tmp_path, caplog):
    root = tmp_path / "chip"
    (root / "rtl").mkdir(parents=True)
    (root / "rtl" / "counter.v").write_text(RTL)
    os.symlink(root / "rtl" / "counter.v", root / "rtl" / "alias.v")  # a link to a file
    os.symlink(root / "rtl", root / "rtl_link")  # a link to a folder
    os.symlink(tmp_path / "gone.v", root / "dangling.v")  # a broken link
    with caplog.at_level(logging.WARNING):
        report = curate(config([root]), tmp_path / "out")
    assert report["skipped"] == {"symlink": 3}
    assert report["files_seen"] == 4 and report["files_read"] == 1 and report["documents_written"] == 1
    assert sorted(report["skipped_examples"]["symlink"]) == ["dangling.v", "rtl/alias.v", "rtl_link"]
    assert "3 file(s) skipped as symbolic links" in caplog.text and "rtl/alias.v" in caplog.text
    assert_files_add_up(report)


def test_hidden_files_and_folders_are_counted_as_skipped_without_being_read(tmp_path):
    root = tmp_path / "chip"
    (root / ".git" / "objects" / "ab").mkdir(parents=True)
    (root / "rtl" / ".cache").mkdir(parents=True)
    (root / "rtl" / "counter.v").write_text(RTL)
    (root / ".gitignore").write_text("build/\n")
    (root / ".git" / "config").write_text("[core]\n\trepositoryformatversion = 0\n")
    (root / ".git" / "objects" / "ab" / "cdef").write_bytes(b"x\x9c" + bytes(50))
    (root / "rtl" / ".cache" / "counter.v").write_text(RTL)
    os.symlink(root / "rtl", root / ".rtl_link")  # a hidden link to a folder: one hidden entry, not followed
    (root / "rtl" / ".constraints.sdc").write_text(SDC)  # a document, were it read
    report = curate(config([root]), tmp_path / "out")
    assert report["skipped"] == {"hidden": 6} and report["files_read"] == 1 and report["documents_written"] == 1
    # listed, never read: the bytes seen are counter.v's alone
    assert report["files_seen"] == 7 and report["bytes_seen"] == len(RTL)
    walked = [".git/config", ".git/objects/ab/cdef", ".rtl_link", ".gitignore", "rtl/.cache/counter.v"]
    assert report["skipped_examples"]["hidden"] == walked  # the first five; rtl/.constraints.sdc is counted
    assert_files_add_up(report)


def test_hidden_members_of_archives_are_counted_as_skipped_without_being_read(tmp_path):
    """As in a folder: an archive member with a hidden part in its path (.git, .gitignore) is listed and
    counted, never read; './' (as `tar -C repo .` writes names) hides nothing."""
    hook = "#!/bin/sh\n# An example hook script to verify what is about to be committed.\n" + "exit 0\n" * 20
    tar_path = tmp_path / "repo.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        for name, text in [
            ("./repo/.git/hooks/pre-commit.sample", hook),
            ("./repo/.gitignore", "build/\n"),
            ("./repo/rtl/counter.v", RTL),
            ("./repo/rtl/.cache/counter.v", RTL),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
        link = tarfile.TarInfo("./repo/.latest")  # a hidden link: hidden, as in a folder
        link.type, link.linkname = tarfile.SYMTYPE, "rtl"
        archive.addfile(link)
    zip_path = tmp_path / "proj.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("proj/.github/workflows/ci.yml", "on: push\njobs:\n  lint:\n    runs-on: ubuntu-latest\n")
        archive.writestr("proj/top.sdc", SDC)
    report = curate(config([tar_path, zip_path]), tmp_path / "out")
    assert report["skipped"] == {"hidden": 5} and report["files_read"] == 2 and report["documents_written"] == 2
    assert report["files_seen"] == 7 and report["bytes_seen"] == len(RTL) + len(SDC)  # hidden ones never read
    assert sorted(report["skipped_examples"]["hidden"]) == [
        "proj.zip/proj/.github/workflows/ci.yml",
        "repo.tar.gz/./repo/.git/hooks/pre-commit.sample",
        "repo.tar.gz/./repo/.gitignore",
        "repo.tar.gz/./repo/.latest",
        "repo.tar.gz/./repo/rtl/.cache/counter.v",
    ]
    assert_files_add_up(report)


def test_symlinks_inside_archives_are_counted(tmp_path):
    tar_path = tmp_path / "bundle.tar"
    with tarfile.open(tar_path, "w") as archive:
        data = SDC.encode()
        info = tarfile.TarInfo("c/top.sdc")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("c/alias.sdc")
        link.type, link.linkname = tarfile.SYMTYPE, "top.sdc"
        archive.addfile(link)
    zip_path = tmp_path / "more.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        link = zipfile.ZipInfo("d/alias.sdc")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16  # how Unix zip tools store a link
        archive.writestr(link, "top.sdc")
    report = curate(config([tar_path, zip_path]), tmp_path / "out")
    assert report["skipped"] == {"symlink": 2} and report["files_seen"] == 3 and report["files_read"] == 1
    assert_files_add_up(report)


def test_jsonl_records_are_curated_one_document_per_line(tmp_path):
    root = tmp_path / "threads"
    root.mkdir()
    lines = [
        json.dumps({"text": "Bug 17: the FIFO overflows when wr_en is held high during reset release."}),
        "",  # blank lines are not records
        json.dumps({"text": RTL, "path": "rtl/counter.v"}),  # language from the record's own path
        json.dumps({"text": "ok"}),  # too short: a skipped record, not a skipped file
        # curation's own output format: its lang is kept
        json.dumps({"text": SDC, "source": "old", "lang": "sdc", "path": "a.sdc", "generated": False}),
    ]
    (root / "bugs.jsonl").write_text("\n".join(lines) + "\n")
    (root / "settings.json").write_text(json.dumps({"text": "a JSON file that is not JSON lines stays one text"}))
    out = tmp_path / "out"
    report = curate(config([root]), out)
    rows = {r["path"]: r for r in records(out)}

    assert set(rows) == {"bugs.jsonl:1", "bugs.jsonl:3", "bugs.jsonl:5", "settings.json"}
    assert rows["bugs.jsonl:1"]["text"].startswith("Bug 17: the FIFO")
    assert rows["bugs.jsonl:3"]["lang"] == "verilog" and rows["bugs.jsonl:3"]["text"] == RTL
    assert rows["bugs.jsonl:5"]["lang"] == "sdc" and rows["bugs.jsonl:5"]["source"] == "threads"
    assert rows["settings.json"]["lang"] == "json"
    assert report["records"] == {"files": 1, "read": 4, "skipped": {"too_short": 1}}
    assert report["files_seen"] == 2 and report["files_read"] == 2 and report["skipped"] == {}
    assert_files_add_up(report)
    assert_documents_add_up(report)


@pytest.mark.parametrize(
    "bad_line, detail",
    [
        ('{"text": "unterminated', r"bugs\.jsonl:2: not JSON \(Unterminated string"),
        ('["a", "list"]', r"bugs\.jsonl:2: a JSON list, not an object"),
        ('{"body": "no text key"}', r"bugs\.jsonl:2: no string \"text\" \(keys: body\)"),
        ('{"text": "lone \\ud800 surrogate here"}', r"bugs\.jsonl:2: .*surrogate"),
    ],
)
def test_a_malformed_jsonl_line_skips_its_file_whole_naming_file_and_line(tmp_path, caplog, bad_line, detail):
    """A damaged records file stops no curation: it is skipped whole (no record of it curated), counted,
    and its first bad line named in the report and in one warning."""
    root = tmp_path / "threads"
    root.mkdir()
    (root / "bugs.jsonl").write_text(
        json.dumps({"text": "a fine first record of some length"}) + "\n" + bad_line + "\n"
    )
    (root / "counter.v").write_text(RTL)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        report = curate(config([root]), out)
    assert report["skipped"] == {"jsonl_malformed": 1} and report["files_read"] == 1
    assert report["records"] == {"files": 0, "read": 0, "skipped": {}}
    assert [r["path"] for r in records(out)] == ["counter.v"]  # not the fine first record
    [example] = report["skipped_examples"]["jsonl_malformed"]
    assert re.fullmatch(detail + ".*", example) and "\n" not in example
    warnings = [r.getMessage() for r in caplog.records if "bugs.jsonl" in r.getMessage()]
    assert warnings == [f"1 {SKIPS_WORTH_A_WARNING['jsonl_malformed']}: {example}"]
    assert "skipped whole" in warnings[0]
    assert_files_add_up(report)
    assert_documents_add_up(report)


def test_a_malformed_jsonl_inside_an_archive_is_skipped_the_same_way(tmp_path, caplog):
    zip_path = tmp_path / "threads.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("a/bugs.jsonl", json.dumps({"text": SDC}) + "\n{broken\n")
        archive.writestr("a/top.sdc", SDC + "set_load 0.05 [all_outputs]\n")
    with caplog.at_level(logging.WARNING):
        report = curate(config([zip_path]), tmp_path / "out")
    assert report["skipped"] == {"jsonl_malformed": 1} and report["files_read"] == 1
    assert report["documents_written"] == 1  # top.sdc, not the record identical to SDC
    [example] = report["skipped_examples"]["jsonl_malformed"]
    assert example.startswith("threads.zip/a/bugs.jsonl:2: not JSON (")
    assert example in caplog.text
    assert_files_add_up(report)


def test_a_jsonl_of_another_kind_is_skipped_and_said_not_fatal(tmp_path, caplog):
    """Simulation logs or tool telemetry in JSONL sit in chip repositories; they stop no curation."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "sim_log.jsonl").write_text(json.dumps({"cycle": 1, "event": "reset"}) + "\n")
    (root / "counter.v").write_text(RTL)
    with caplog.at_level(logging.WARNING):
        report = curate(config([root]), tmp_path / "out")
    assert report["skipped"] == {"jsonl_without_text": 1} and report["documents_written"] == 1
    assert "sim_log.jsonl" in caplog.text and 'not a record with a string "text"' in caplog.text
    assert_files_add_up(report)


def test_a_records_file_over_the_size_limit_is_said_with_the_key_to_raise(tmp_path, caplog):
    root = tmp_path / "threads"
    root.mkdir()
    (root / "bugs.jsonl").write_text(json.dumps({"text": "a bug thread " * 50}) + "\n")
    (root / "counter.v").write_text(RTL[:90])  # a document kept: a corpus of none is refused
    cfg = config([root])
    cfg.limits.max_bytes = 100
    with caplog.at_level(logging.WARNING):
        report = curate(cfg, tmp_path / "out")
    assert report["skipped"] == {"jsonl_too_large": 1}
    assert "bugs.jsonl" in caplog.text and "data.curate.limits.max_bytes" in caplog.text


def test_files_seen_is_files_read_plus_files_skipped_per_reason(tmp_path):
    root = tmp_path / "mix"
    root.mkdir()
    (root / "counter.v").write_text(RTL)
    (root / "copy.v").write_text(RTL)  # an exact duplicate: read, then removed as a document
    (root / "huge.txt").write_text("x" * 5000)
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (root / "tiny.txt").write_text("hi")
    (root / "notes.jsonl").write_text(json.dumps({"text": SDC}) + "\n" + json.dumps({"text": ""}) + "\n")
    os.symlink(root / "counter.v", root / "link.v")
    with zipfile.ZipFile(root / "bundle.zip", "w") as archive:
        archive.writestr("a.sdc", "set_output_delay 2 -clock clk [all_outputs]\nset_load 0.05 [all_outputs]\n")
        archive.writestr("inner.zip", b"PK")
    report = curate(config([root], **{"limits.max_bytes": 4000}), tmp_path / "out")

    assert report["skipped"] == {"too_large": 1, "binary": 1, "too_short": 1, "symlink": 1, "nested_archive": 1}
    # read: counter.v, copy.v, notes.jsonl, bundle.zip/a.sdc; the zip itself is its members
    assert report["files_read"] == 4 and report["files_seen"] == 9
    assert report["records"] == {"files": 1, "read": 2, "skipped": {"too_short": 1}}
    assert report["duplicates"]["exact"] == 1 and report["documents_written"] == 3
    assert_files_add_up(report)
    assert_documents_add_up(report)
    written = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert written["files_read"] == 4 and written["skipped_examples"]["too_large"] == ["huge.txt"]


def test_inputs_that_give_no_document_publish_nothing_and_are_named(tmp_path, caplog):
    """An empty folder was curated into a published corpus/ holding only its report, exit 0."""
    empty, chip = tmp_path / "empty", tmp_path / "chip"
    empty.mkdir()
    chip.mkdir()
    (empty / ".notes").write_text("hidden, not read\n")
    with pytest.raises(ChipadaptError, match=r"no document kept from .*empty \(1 file\(s\) seen, 0 read, skipped"):
        curate(config([empty]), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    (chip / "counter.v").write_text(RTL)
    with caplog.at_level(logging.WARNING):
        report = curate(config([chip, empty]), tmp_path / "out")
    assert report["documents_written"] == 1
    assert re.search(r"data.curate.inputs\[empty\]: no document kept from .*empty", caplog.text)
