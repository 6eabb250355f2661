"""A folder is a Hugging Face dataset by what save_to_disk writes, not by a file name: a source repository
with a `state.json` of its own was refused whole by curation as a dataset."""

import json

from chipadapt.curation.walk import units
from chipadapt.io.hf_dataset import dataset_path_records, is_dataset_path


def test_a_repository_with_its_own_state_json_is_curated_not_refused(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "state.json").write_text(json.dumps({"k": 1}))
    (repo / "a.v").write_text("module a; endmodule\n")
    (repo / "dataset_dict.json").write_text(json.dumps({"name": "a build setting"}))
    assert not is_dataset_path(repo)
    files = [f for unit in units({"repo": str(repo)}) for f in unit.files]
    assert sorted(f.rsplit("/", 1)[1] for f in files) == ["a.v", "dataset_dict.json", "state.json"]


def test_datasets_saved_to_disk_are_still_recognised_and_read(tmp_path):
    import datasets

    one = datasets.Dataset.from_dict({"text": ["first", "second"]})
    one.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": one}).save_to_disk(str(tmp_path / "dict"))
    for name in ("one", "dict"):
        assert is_dataset_path(tmp_path / name)
        assert [r["text"] for _, r in dataset_path_records(tmp_path / name)] == ["first", "second"]
    # .arrow files beside their dataset_info.json (no state.json): still a dataset, read as its data files
    arrows = tmp_path / "arrows"
    arrows.mkdir()
    for f in (tmp_path / "one").iterdir():
        if f.name != "state.json":
            (arrows / f.name).write_bytes(f.read_bytes())
    assert is_dataset_path(arrows)
    assert [r["text"] for _, r in dataset_path_records(arrows)] == ["first", "second"]
