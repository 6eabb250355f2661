"""The redaction key is needed only with data.curate.redact=true: an unusable cache (CHIPADAPT_CACHE naming
a file) stopped every curation in a traceback, and now stops only a redacting one, in one line. Made by
linking a whole key into place, a key is never read part-written; a key file cut short is replaced, once."""

import os
import subprocess
import sys
import threading

from conftest import CONF, ROOT
from omegaconf import OmegaConf

from chipadapt.curation import redaction_key as key_module
from chipadapt.curation.redaction_key import KEY_BYTES, redaction_key
from chipadapt.curation.run import curate

RTL = "module counter(input clk, output reg [3:0] q);\n  always @(posedge clk) q <= q + 1;\nendmodule\n"


def _inputs(tmp_path):
    folder = tmp_path / "rtl"
    folder.mkdir()
    (folder / "counter.v").write_text(RTL)
    return folder


def test_without_redaction_a_cache_that_is_a_file_is_not_needed(tmp_path, monkeypatch):
    cache = tmp_path / "cache_is_a_file"
    cache.write_text("not a folder")
    monkeypatch.setenv("CHIPADAPT_CACHE", str(cache))
    cfg = OmegaConf.load(CONF / "data" / "curate" / "sample.yaml")
    cfg.inputs, cfg.workers, cfg.redact = [str(_inputs(tmp_path))], 1, False
    report = curate(cfg, tmp_path / "out")
    assert report["documents_written"] == 1
    assert cache.read_text() == "not a folder"


def test_with_redaction_a_cache_that_is_a_file_is_one_line(tmp_path):
    cache = tmp_path / "cache_is_a_file"
    cache.write_text("not a folder")
    env = {**os.environ, "CHIPADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chipadapt.data.curate",
            f"data.curate.inputs=[{_inputs(tmp_path)}]",
            "data.curate.workers=1",
            "data.curate.redact=true",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("chipadapt:")]
    path = cache / "curation" / "redaction.key"
    assert len(said) == 1 and said[0].startswith(
        f"chipadapt: error: data.curate.redact: cannot keep the redaction key in {path}: "
    ), done.stderr[-3000:]
    assert said[0].endswith("; set CHIPADAPT_CACHE to a writable folder")
    assert not (tmp_path / "run" / "corpus").exists()


def test_a_key_file_cut_short_ends_as_one_whole_key_two_callers_agree_on(tmp_path, monkeypatch):
    """Before: a caller finding the 0-byte file unlinked it and wrote its own, while the first caller could
    still read b"" (an empty HMAC key) or a key the other then replaced."""
    monkeypatch.setattr(key_module, "WAIT_SECONDS", 0.2, raising=False)
    (tmp_path / "redaction.key").write_bytes(b"")  # left by a crash between create and write
    keys, start = [], threading.Barrier(2)

    def caller():
        start.wait()
        keys.append(redaction_key(tmp_path))

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) == KEY_BYTES
    assert (tmp_path / "redaction.key").read_bytes() == keys[0]
    assert redaction_key(tmp_path) == keys[0]  # later callers too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redaction.key", "redaction.key.lock"]  # no temporaries


def test_a_new_key_is_never_seen_empty(tmp_path, monkeypatch):
    """A key created empty and then written let a second caller read the empty file: now it is linked in whole."""
    seen = []
    real_link = os.link

    def link_and_look(src, dst, *args, **kwargs):
        real_link(src, dst, *args, **kwargs)
        seen.append(len(open(dst, "rb").read()))  # what another caller reads the moment the key appears

    monkeypatch.setattr(key_module.os, "link", link_and_look)
    key = redaction_key(tmp_path)
    assert seen == [KEY_BYTES] and len(key) == KEY_BYTES


def test_a_cache_without_hard_links_keeps_one_key(tmp_path, monkeypatch):
    """Some FUSE and SMB mounts refuse os.link: the key is made in place there, and read back after."""
    import errno

    from chipadapt.curation import redaction_key as rk

    def no_links(*_):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(rk.os, "link", no_links)
    first = rk.redaction_key(tmp_path)
    assert len(first) == rk.KEY_BYTES and rk.redaction_key(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redaction.key"]
