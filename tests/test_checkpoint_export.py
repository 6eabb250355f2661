"""export.py: a causal-LM run's checkpoint (last.ckpt or an earlier step's) as a Hugging Face folder
holding the weights the run had at that step, LoRA merged in; what cannot be exported is one line."""

import itertools
import json
import logging

import pytest
import torch
from conftest import CONF, TINY_FAST, run_train
from helpers.faults import assert_unchanged, assert_user_error, run_entry, snapshot
from helpers.models import tiny_model_copy

from chipadapt.errors import ChipadaptError

pytestmark = pytest.mark.integration

STEPS = 3
TRAIN = [
    *TINY_FAST,
    f"trainer.max_steps={STEPS}",
    "stage.validate_before=false",
    "optim.lr=1e-3",
    "callbacks.checkpoint.every_n_train_steps=1",
]


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(one: dict, two: dict, atol: float = 1e-6) -> None:
    assert sorted(one) == sorted(two)
    for name in one:
        assert torch.allclose(one[name].float(), two[name].float(), atol=atol), name


EXPORTS = itertools.count()


def export(tmp_path, *args):
    """export.py in a subprocess, its own log folder each time."""
    return run_entry("export.py", [*args, f"hydra.run.dir={tmp_path / 'export_logs' / str(next(EXPORTS))}"])


def export_here(tmp_path, *args) -> dict:
    """export.py's job in this process, composed as the command composes it (each export.py process spent
    seconds importing): the command line's own contract, exit 0 and one error line with exit 2, is checked
    by the first export of test_last_and_an_earlier_step_hold_the_weights_of_their_step and by
    test_what_cannot_be_exported_is_one_line."""
    from hydra import compose, initialize_config_dir

    from chipadapt.checkpoint_export import run

    logs = tmp_path / "export_logs" / str(next(EXPORTS))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("export", overrides=[*args, f"paths.output_dir={logs}"])
    return run(cfg)


def exported_ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, isolated_cache):
    """A full fine-tuning run keeping every step's checkpoint, and a LoRA run, both from a copy of the
    tiny model (a test changes the copy): the two jobs of one sweep, one process starting for both."""
    root = tmp_path_factory.mktemp("export_runs")
    base = tiny_model_copy(root, "base")
    proc = run_train(
        [
            "-m",
            *TRAIN,
            f"model.path={base}",
            "callbacks.checkpoint.save_top_k=-1",
            "peft=none,lora_small",
            f"hydra.sweep.dir={root / 'sweep'}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"base": base, "full": root / "sweep" / "0", "lora": root / "sweep" / "1"}


def test_last_and_an_earlier_step_hold_the_weights_of_their_step(runs, tmp_path, caplog):
    from chipadapt.models.hf_folder import check_hf_folder, load_causal_lm

    run = runs["full"]
    exported_ok(export(tmp_path, f"checkpoint={run}/checkpoints/last.ckpt"))
    last = run / "exports" / f"step-{STEPS}"
    assert_same_weights(weights(run / "model"), weights(last))  # the run's own final model
    record = json.loads((last / "export.json").read_text())
    assert record["step"] == STEPS and record["sources"]["starting_model"]["path"] == str(runs["base"].resolve())

    # step 1 by number, from the checkpoint Lightning named `epoch=0-step=1.ckpt`
    export_here(tmp_path, f"run={run}", "step=1", f"output={tmp_path / 'step1'}")
    ckpt = torch.load(run / "checkpoints" / "epoch=0-step=1.ckpt", map_location="cpu", weights_only=True)
    at_step = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    early = weights(tmp_path / "step1")
    assert_same_weights({k: at_step[k] for k in early}, early)
    assert not torch.allclose(early["model.norm.weight"], weights(last)["model.norm.weight"])  # trained on since
    # What evaluate.py, chat.py and merge.py open: an exact HF folder.
    model = load_causal_lm(check_hf_folder(tmp_path / "step1", "model.path"), "float32", "sdpa")
    assert model.config.vocab_size == 512

    # The same command again (a requeued job) passes, writing nothing; another checkpoint into the same
    # folder replaces the export only when asked; the run's model/ (train's output) never.
    before = snapshot(tmp_path / "step1")
    caplog.set_level(logging.INFO, logger="chipadapt.checkpoint_export")
    export_here(tmp_path, f"run={run}", "step=1", f"output={tmp_path / 'step1'}")
    assert "exported before from this checkpoint and inputs; not exported again" in caplog.text
    assert snapshot(tmp_path / "step1") == before
    # The same checkpoint file whose content is not what the export recorded is another export.
    import shutil

    from omegaconf import OmegaConf

    from chipadapt.checkpoint_export import exported_before, plan_export

    edited = shutil.copytree(tmp_path / "step1", tmp_path / "edited")
    record = json.loads((edited / "export.json").read_text())
    assert exported_before(plan_export(OmegaConf.create({"run": str(run), "step": 1, "output": str(edited)}))) is None
    record["sources"]["checkpoint"]["fingerprint"] = "0" * 64
    (edited / "export.json").write_text(json.dumps(record))
    job = plan_export(OmegaConf.create({"run": str(run), "step": 1, "output": str(edited)}))
    assert exported_before(job) == ", of the same checkpoint file, but its content changed since"
    with pytest.raises(ChipadaptError, match=r"holds a previous export output, of step 1 of .*overwrite=true"):
        export_here(tmp_path, f"run={run}", "step=2", f"output={tmp_path / 'step1'}")
    assert_unchanged(before)
    assert export_here(tmp_path, f"run={run}", "step=2", f"output={tmp_path / 'step1'}", "overwrite=true")["step"] == 2
    assert json.loads((tmp_path / "step1" / "export.json").read_text())["step"] == 2
    before = snapshot(run / "model")
    with pytest.raises(ChipadaptError, match="not an output of export"):
        export_here(tmp_path, f"run={run}", f"output={run / 'model'}", "overwrite=true")
    assert_unchanged(before)


def test_lora_checkpoint_holding_adapters_only_exports_the_merged_model(runs, tmp_path):
    run = runs["lora"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["frozen_weights_left_out"]  # the base comes from the starting folder
    export_here(tmp_path, f"run={run}", f"output={tmp_path / 'merged'}")
    assert_same_weights(weights(run / "model"), weights(tmp_path / "merged"))
    assert json.loads((tmp_path / "merged" / "export.json").read_text())["lora_merged"] is True


def test_sharded_checkpoint_folder_exports_like_the_file(runs, tmp_path):
    """FSDP's sharded layout as Lightning writes it: torch.distributed.checkpoint's files of
    {"model": state_dict} and meta.pt with the rest."""
    import torch.distributed.checkpoint as dcp

    run = runs["full"]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sharded = tmp_path / "sharded.ckpt"
    dcp.save({"model": checkpoint.pop("state_dict")}, checkpoint_id=str(sharded), no_dist=True)
    torch.save(checkpoint, sharded / "meta.pt")
    export_here(tmp_path, f"run={run}", f"checkpoint={sharded}", f"output={tmp_path / 'out'}")
    assert_same_weights(weights(run / "model"), weights(tmp_path / "out"))


def test_a_starting_model_changed_since_the_run_is_refused(runs, tmp_path):
    config = runs["base"] / "config.json"
    original = config.read_text()
    try:
        config.write_text(original.replace("{", "{ ", 1))
        with pytest.raises(ChipadaptError, match="changed since the run") as refused:
            export_here(tmp_path, f"run={runs['full']}", f"output={tmp_path / 'out'}")
        assert str(runs["base"]) in str(refused.value)
    finally:
        config.write_text(original)
    assert not (tmp_path / "out").exists()


def test_what_cannot_be_exported_is_one_line(runs, tmp_path):
    """The command line once (one line, exit 2); the other refusals in-process, each a subprocess less."""
    from omegaconf import OmegaConf

    from chipadapt.checkpoint_choice import find_checkpoint
    from chipadapt.checkpoint_ownership import run_record
    from chipadapt.models.checkpoint_weights import checkpoint_layout

    run = runs["full"]
    assert_user_error(export(tmp_path, f"run={run}", "step=99"), "no checkpoint of step 99", "steps 1, 2, 3")

    def refused(match: str, **settings):
        cfg = OmegaConf.create({"checkpoint": None, "run": None, "step": None, **settings})
        with pytest.raises(ChipadaptError, match=match):
            find_checkpoint(cfg)

    refused("checkpoint: .* does not exist", checkpoint=f"{run}/checkpoints/nope.ckpt")
    refused("step: 'abc'", run=str(run), step="abc")
    refused("checkpoint: required", step=1)

    # A retriever run (its record says so): its model/ is the only export.
    other = tmp_path / "retriever_run"
    (other / "checkpoints").mkdir(parents=True)
    record = json.loads((run / "manifest.json").read_text())
    record["config"]["stage"] = {"name": "retriever", "runner": {"_target_": "chipadapt.stages.retriever.run"}}
    (other / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(ChipadaptError, match=f"retriever run.*{other}/model"):
        run_record(other)

    # DeepSpeed's folder: only its own script puts it together.
    deepspeed = tmp_path / "ds.ckpt"
    (deepspeed / "checkpoint").mkdir(parents=True)
    (deepspeed / "latest").write_text("checkpoint")
    with pytest.raises(ChipadaptError, match="DeepSpeed.*zero_to_fp32.py"):
        checkpoint_layout(deepspeed, "checkpoint")
