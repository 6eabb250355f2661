"""A merge's manifest fingerprints the models it reads, not a models.base its method never opens
(chipalign, linear, slerp); a merged model whose manifest was written before, with that base's
fingerprint, is still this job's merge when the models it read are unchanged."""

import json

from test_merge import merge_cfg, tiny_pair  # noqa: F401  (fixture)

from chipadapt.merge import merged_folder
from chipadapt.merge.merged_folder import input_fingerprints
from chipadapt.merge.run import merged_before, run


def test_only_the_models_the_method_reads_are_fingerprinted(tmp_path, tiny_pair, monkeypatch):  # noqa: F811
    chip, instruct = tiny_pair
    base = tmp_path / "unread_base"  # never read: not even there
    hashed = []
    real = merged_folder.fingerprint_input
    monkeypatch.setattr(merged_folder, "fingerprint_input", lambda path: hashed.append(str(path)) or real(path))
    assert set(input_fingerprints(merge_cfg("chipalign", chip, instruct, tmp_path / "o", base=base))) == {
        "chip",
        "instruct",
    }
    assert str(base) not in hashed
    reads_base = input_fingerprints(merge_cfg("task_arithmetic", chip, instruct, tmp_path / "o", base=instruct))
    assert set(reads_base) == {"chip", "instruct", "base"}


def test_a_manifest_with_the_unread_base_fingerprinted_is_still_the_same_merge(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    out = tmp_path / "merged"
    cfg = merge_cfg("chipalign", chip, instruct, out, lam=0.5, base=instruct)
    run(cfg)
    path = out / "merge_manifest.json"
    manifest = json.loads(path.read_text())
    assert set(manifest["input_fingerprints"]) == {"chip", "instruct"}
    assert merged_before(cfg) is not None
    # As an earlier chipadapt wrote it: the base fingerprinted too.
    manifest["input_fingerprints"]["base"] = "an-earlier-record-of-the-unread-base"
    path.write_text(json.dumps(manifest))
    assert merged_before(cfg) is not None
    # A model it read changed: another merge.
    manifest["input_fingerprints"]["chip"] = "another-chip-model"
    path.write_text(json.dumps(manifest))
    assert merged_before(cfg) is None
