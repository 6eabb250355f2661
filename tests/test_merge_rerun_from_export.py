"""merge.py config=mergekit_config.yml into the folder of the merge that wrote it: the export names the
dtype written and the template taken where the first run left merge.out_dtype and merge.chat_template
null, and the rerun was refused as "merged with other settings". A null and the value it resolves to are
one setting; a value that differs from what the null resolved to is still refused."""

import json
import shutil
from pathlib import Path

import pytest
from helpers.merge_jobs import merge_cfg, tiny_pair

from chipadapt.errors import ChipadaptError
from chipadapt.merge.mergekit_config import overrides_from_mergekit
from chipadapt.merge.run import run


@pytest.fixture
def pair(tmp_path):
    return tiny_pair(tmp_path)


def exported(run_dir: Path) -> list[str]:
    """The overrides `config=RUN/model/mergekit_config.yml` stands for, models as the export names them."""
    return overrides_from_mergekit(run_dir / "model" / "mergekit_config.yml")


def test_a_rerun_from_the_exported_config_is_the_same_job(tmp_path, pair):
    chip, instruct = pair
    job = tmp_path / "run"
    first = run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    recorded = json.loads((job / "manifest.json").read_text())["config"]["merge"]
    assert recorded["out_dtype"] is None and recorded["chat_template"] is None
    overrides = exported(job)
    assert "merge.out_dtype=float32" in overrides and any(o.startswith("merge.chat_template=") for o in overrides)
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    again = run(merge_cfg(chip, instruct, job, *overrides))
    assert again["lam"] == first["lam"] == 0.4 and model.stat().st_mtime_ns == stamp


def test_the_original_command_after_a_merge_from_the_export_is_the_same_job(tmp_path, pair):
    """The other way round: the values set first, then left null."""
    chip, instruct = pair
    source = tmp_path / "source"
    run(merge_cfg(chip, instruct, source, "merge.lam=0.4"))
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, *exported(source)))
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    assert model.stat().st_mtime_ns == stamp


def test_a_rerun_whose_effective_settings_differ_is_still_refused(tmp_path, pair):
    chip, instruct = pair
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    overrides = [o for o in exported(job) if not o.startswith("merge.out_dtype=")]
    with pytest.raises(ChipadaptError, match=r"other settings: merge.out_dtype: None -> 'bfloat16'; overwrite"):
        run(merge_cfg(chip, instruct, job, *overrides, "merge.out_dtype=bfloat16"))
    other = "{% for m in messages %}{{ m.content }}{% endfor %}"
    with pytest.raises(ChipadaptError, match=r"other settings: merge.chat_template: None -> '\{% for m in"):
        run(merge_cfg(chip, instruct, job, "merge.lam=0.4", f"merge.chat_template='{other}'"))


T_CHIP = "{% for m in messages %}CHIP {{ m.content }}{% endfor %}"
T_INSTRUCT = "{% for m in messages %}INSTRUCT {{ m.content }}{% endfor %}"
CHAT_FILES = ("chat_template.jinja", "generation_config.json")


def test_a_rerun_from_the_export_of_a_tied_auto_is_the_same_job(tmp_path, pair):
    """merge.chat_template=auto that found a tie is exported as the template it took: the rerun from the
    export was refused as `'auto' -> '{% for ...'` though it writes the same files."""
    chip, cached = pair
    instruct = Path(shutil.copytree(cached, tmp_path / "instruct"))  # the cached tiny model stays as built
    (chip / "chat_template.jinja").write_text(T_CHIP)
    (instruct / "chat_template.jinja").write_text(T_INSTRUCT)
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, "merge.lam=0.4", "merge.chat_template=auto"))
    overrides = exported(job)
    assert f"merge.chat_template='{T_CHIP}'" in overrides  # the tie went to the chip model's
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    run(merge_cfg(chip, instruct, job, *overrides))
    assert model.stat().st_mtime_ns == stamp
    # The same files as that template given to a merge of its own.
    fresh = tmp_path / "fresh"
    run(merge_cfg(chip, instruct, fresh, *overrides))
    for name in CHAT_FILES:
        assert (fresh / "model" / name).read_bytes() == (job / "model" / name).read_bytes()


def chat_inputs(tmp_path, chip_config: dict, instruct_config: dict) -> dict:
    """A merge config's models: two folders holding only their chat files (a template each, a generation config)."""
    models = {}
    for key, template, generation in (("chip", T_CHIP, chip_config), ("instruct", T_INSTRUCT, instruct_config)):
        folder = tmp_path / key
        folder.mkdir()
        (folder / "chat_template.jinja").write_text(template)
        (folder / "generation_config.json").write_text(json.dumps(generation))
        models[key] = str(folder)
    return {"models": models, "paths": {}}


def test_a_tied_auto_whose_generation_config_differs_stays_another_setting(tmp_path):
    """Under `auto` the chip model's template brings its generation_config.json; given as text,
    merge.chat_template_from=instruct takes the instruct model's: another output, so still a change."""
    from chipadapt.merge.resolved_settings import with_nulls_resolved

    config = chat_inputs(tmp_path, {"eos_token_id": 1}, {"eos_token_id": 2})
    before = {"merge.chat_template": "auto", "merge.chat_template_from": "instruct"}
    now = {"merge.chat_template": T_CHIP, "merge.chat_template_from": "instruct"}
    assert with_nulls_resolved(before, now, config, config) == (before, now)
    (tmp_path / "instruct" / "generation_config.json").write_text(json.dumps({"eos_token_id": 1}))
    assert with_nulls_resolved(before, now, config, config)[0]["merge.chat_template"] == T_CHIP
    # A template `auto` does not take is another setting whatever the generation configs.
    other = {**now, "merge.chat_template": T_INSTRUCT}
    assert with_nulls_resolved(before, other, config, config)[0]["merge.chat_template"] == "auto"


def test_a_template_file_not_utf8_leaves_the_setting_unresolved(tmp_path):
    """A chat_template.jinja that is not UTF-8 stopped the comparison with a traceback."""
    from chipadapt.merge.resolved_settings import with_nulls_resolved

    config = chat_inputs(tmp_path, {}, {})
    (tmp_path / "chip" / "chat_template.jinja").write_bytes(b"{{ '\xff\xfe' }}")
    before = {"merge.chat_template": None, "merge.chat_template_from": "chip"}
    now = {"merge.chat_template": T_CHIP, "merge.chat_template_from": "chip"}
    assert with_nulls_resolved(before, now, config, config)[0]["merge.chat_template"] is None
    auto = {**before, "merge.chat_template": "auto"}
    assert with_nulls_resolved(auto, now, config, config)[0]["merge.chat_template"] == "auto"


def test_inputs_not_on_this_machine_are_neither_downloaded_nor_converted(tmp_path, monkeypatch):
    """A sweep's preflight compares every job's settings before any runs: resolving a null from a hub id
    downloaded it, and from a .gguf file converted it."""
    from chipadapt.merge.resolved_settings import with_nulls_resolved
    from chipadapt.models import locate

    fetched = []
    monkeypatch.setattr(locate, "hub_snapshot", lambda *args: fetched.append(args) or tmp_path)
    monkeypatch.setattr(locate, "gguf_folder", lambda *args: fetched.append(args) or tmp_path)
    gguf = tmp_path / "chip.gguf"
    gguf.write_bytes(b"GGUF")
    for chip in ("org/chip-model", str(gguf)):
        config = {"models": {"chip": chip, "instruct": "org/instruct-model"}, "paths": {}}
        before = {"merge.out_dtype": None, "merge.chat_template": None, "merge.chat_template_from": "instruct"}
        now = {"merge.out_dtype": "float32", "merge.chat_template": T_CHIP, "merge.chat_template_from": "instruct"}
        assert with_nulls_resolved(before, now, config, config) == (before, now)
    assert fetched == []
