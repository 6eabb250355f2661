"""ChipAlign and baseline merges: the math per tensor, and whole folders end to end (in-process; merge.py's
command line over a lambda sweep is test_merge_sweep_cli.py)."""

import json
import math

import pytest
import torch
from conftest import CONF, compose
from helpers.models import perturbed_copy
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.merge.methods.base import TensorStats
from chipadapt.merge.methods.chipalign import ChipAlign
from chipadapt.merge.methods.slerp import Slerp
from chipadapt.merge.methods.task_vectors import Della, TaskArithmetic, Ties
from chipadapt.merge.run import run


def merge_cfg(method: str, chip, instruct, out, lam=0.6, base=None, extra=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            "merge",
            overrides=[
                f"merge={method}",
                f"merge.lam={lam}",
                f"models.chip={chip}",
                f"models.instruct={instruct}",
                f"models.base={base if base else 'null'}",
                f"output={out}",
                f"paths.output_dir={out}.run",
                *extra,  # the run folder (manifest.json) beside the output
            ],
        )


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.6, 1.0])
def test_chipalign_norm_is_the_geometric_interpolation_and_endpoints_are_exact(lam):
    torch.manual_seed(0)
    chip, instruct = torch.randn(64, 32) * 3, torch.randn(64, 32)
    merged = ChipAlign()("w", chip, instruct, None, lam, TensorStats.of(chip, instruct)).tensor
    expected_norm = chip.norm() ** lam * instruct.norm() ** (1 - lam)
    assert merged.norm().item() == pytest.approx(expected_norm.item(), rel=1e-4)
    if lam == 1.0:
        assert torch.equal(merged, chip)
    if lam == 0.0:
        assert torch.equal(merged, instruct)


def test_chipalign_on_orthogonal_parallel_and_zero_tensors():
    e1, e2 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 8.0])
    align = lambda a, b, lam: ChipAlign()("w", a, b, None, lam, TensorStats.of(a, b))  # noqa: E731
    out = align(e1, e2, 0.5)
    # Halfway along the quarter circle, at norm sqrt(2 * 8) = 4.
    torch.testing.assert_close(out.tensor, torch.tensor([4 * math.cos(math.pi / 4), 4 * math.sin(math.pi / 4)]))
    assert out.diagnostics["angle_deg"] == pytest.approx(90.0)
    parallel = align(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]), 0.25)
    assert parallel.diagnostics["fallback"] == "parallel" and torch.isfinite(parallel.tensor).all()
    torch.testing.assert_close(parallel.tensor, torch.tensor([1.0, 2.0]) * 2**0.75)
    zero = align(torch.zeros(3), torch.ones(3), 0.5)
    assert zero.diagnostics["fallback"] == "zero_norm" and torch.equal(zero.tensor, torch.full((3,), 0.5))


def test_baseline_methods():
    torch.manual_seed(1)
    base = torch.randn(1000)
    chip, instruct = base + torch.randn(1000) * 0.1, base + torch.randn(1000) * 0.1
    stats = TensorStats.of(chip, instruct)
    ta = TaskArithmetic(scale=1.0)("w", chip, instruct, base, 0.5, stats).tensor
    torch.testing.assert_close(ta, 0.5 * chip + 0.5 * instruct)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    s = Slerp(dot_threshold=0.9995)("w", e1, e2, None, 0.5, TensorStats.of(e1, e2)).tensor
    torch.testing.assert_close(s, torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    ties = Ties(density=0.2, scale=1.0)("w", chip, instruct, base, 0.5, stats).tensor
    changed = (ties - base) != 0
    assert 0.2 <= changed.float().mean() <= 0.4  # union of two top-20% masks
    della = Della(density=0.3, epsilon=0.1, scale=1.0, seed=0)
    first, second = (della("w", chip, instruct, base, 0.5, stats).tensor for _ in range(2))
    assert torch.equal(first, second) and not torch.equal(first, base)


@pytest.fixture
def tiny_pair(tmp_path):
    """The tiny model as `instruct` and a perturbed copy as `chip`."""
    from chipadapt.models.hf_folder import resolve_model_folder

    instruct = resolve_model_folder(compose(["model=tiny"], tmp_path).model)
    return perturbed_copy(instruct, tmp_path / "chip"), instruct


@pytest.mark.parametrize("method", ["chipalign", "linear", "slerp", "task_arithmetic", "ties", "della"])
def test_merged_tiny_model_loads_and_generates(tmp_path, tiny_pair, method):
    chip, instruct = tiny_pair
    out = tmp_path / "merged"
    summary = run(merge_cfg(method, chip, instruct, out, lam=0.6, base=instruct))
    assert summary["tensors"] == len(load_file(chip / "model.safetensors"))
    manifest = json.loads((out / "merge_manifest.json").read_text())
    assert manifest["summary"]["method"] == method and (out / "merge_diagnostics.csv").read_text().count("\n") > 10
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("module fifo", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 5


def test_blockwise_streaming_gives_the_same_tensors_as_whole_tensor_merging(tmp_path, tiny_pair, monkeypatch):
    import chipadapt.merge.tensor_merge as tensor_merge

    chip, instruct = tiny_pair
    run(merge_cfg("chipalign", chip, instruct, tmp_path / "whole", lam=0.6))
    monkeypatch.setattr(tensor_merge, "BLOCK_ELEMENTS", 100)  # many blocks of a few rows each
    run(merge_cfg("chipalign", chip, instruct, tmp_path / "blocks", lam=0.6))
    whole, blocks = (
        load_file(tmp_path / "whole" / "model.safetensors"),
        load_file(tmp_path / "blocks" / "model.safetensors"),
    )
    for name in whole:
        torch.testing.assert_close(blocks[name], whole[name], rtol=1e-6, atol=1e-7)


def test_lambda_endpoints_reproduce_the_input_folders(tmp_path, tiny_pair):
    chip, instruct = tiny_pair
    for lam, source in ((1.0, chip), (0.0, instruct)):
        run(merge_cfg("chipalign", chip, instruct, tmp_path / f"m{lam}", lam=lam))
        merged, original = (
            load_file(tmp_path / f"m{lam}" / "model.safetensors"),
            load_file(source / "model.safetensors"),
        )
        assert merged.keys() == original.keys()
        assert all(torch.equal(merged[k], original[k]) for k in merged)


def test_schedule_sets_lambda_per_tensor_pattern(tmp_path, tiny_pair):
    chip, instruct = tiny_pair
    run(
        merge_cfg(
            "chipalign",
            chip,
            instruct,
            tmp_path / "m",
            lam=0.0,
            extra=["+merge.schedule=[{pattern: 'layers\\.1\\.', lam: 1.0}]"],
        )
    )
    merged, c, i = (load_file(p / "model.safetensors") for p in (tmp_path / "m", chip, instruct))
    for name, tensor in merged.items():
        assert torch.equal(tensor, c[name] if "layers.1." in name else i[name]), name


def test_augmented_chip_vocabulary_keeps_its_extra_rows(tmp_path):
    from conftest import write_jsonl
    from omegaconf import OmegaConf

    from chipadapt.models.hf_folder import resolve_model_folder
    from chipadapt.tokenizer.augment import DomainTokenizer

    instruct = resolve_model_folder(compose(["model=tiny"], tmp_path).model)
    corpus = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "always_ff @(posedge clk_i or negedge rst_ni) fifo_wready"}] * 40
    )
    chip = DomainTokenizer(
        str(tmp_path / "cache"),
        OmegaConf.create({"d": {"path": str(corpus)}}),
        None,
        600,
        30,
        1e9,
        2,
        6,
        init={"input": "mean", "output": "mean"},
    )(instruct)
    # As if DAPT had trained the chip model: move its weights away from the instruct model's.
    c = load_file(chip / "model.safetensors")
    torch.manual_seed(0)
    save_file(
        {k: v + 0.05 * torch.randn_like(v) for k, v in c.items()},
        str(chip / "model.safetensors"),
        metadata={"format": "pt"},
    )
    out = tmp_path / "merged"
    summary = run(merge_cfg("chipalign", chip, instruct, out, lam=0.5))
    merged, c = load_file(out / "model.safetensors"), load_file(chip / "model.safetensors")
    instruct_embed = load_file(instruct / "model.safetensors")["model.embed_tokens.weight"]
    rows = instruct_embed.shape[0]
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert merged[name].shape == c[name].shape
        assert torch.equal(merged[name][rows:], c[name][rows:])
        assert not torch.equal(merged[name][:rows], c[name][:rows])
        assert not torch.equal(merged[name][:rows], instruct_embed)  # tied instruct: lm_head is its embedding
        assert summary["extra_rows"][name] == c[name].shape[0] - rows
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    assert (out / "tokenizer.json").read_text() == (chip / "tokenizer.json").read_text()
    assert (
        AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.shape[0]
        == c["model.embed_tokens.weight"].shape[0]
    )


def test_an_output_of_another_command_is_refused_naming_that_command(tmp_path, tiny_pair):
    """`output=RUN/model` of a train run: its marker says train.py wrote it, which the refusal says."""
    from chipadapt.io.outputs import publish_folder

    chip, instruct = tiny_pair
    trained = tmp_path / "run" / "model"
    with publish_folder(trained, "train") as tmp:
        (tmp / "model.safetensors").write_bytes(b"trained weights")
    with pytest.raises(ChipadaptError, match=r"^output: .*run/model is an output of train, not of merge"):
        run(merge_cfg("chipalign", chip, instruct, trained, extra=["overwrite=true"]))
    assert (trained / "model.safetensors").read_bytes() == b"trained weights"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ChipadaptError, match="is not an output of merge .no chipadapt marker."):
        run(merge_cfg("chipalign", chip, instruct, mine, extra=["overwrite=true"]))
    with pytest.raises(ChipadaptError, match="is models.chip itself"):  # an input is named as one first
        run(merge_cfg("chipalign", chip, instruct, chip, extra=["overwrite=true"]))


def test_mismatch_errors_and_interrupted_merge_leaves_nothing(tmp_path, tiny_pair, monkeypatch):
    chip, instruct = tiny_pair
    with pytest.raises(ChipadaptError, match="models.base: merge=ties needs a base model folder"):
        run(merge_cfg("ties", chip, instruct, tmp_path / "x"))
    config = json.loads((chip / "config.json").read_text())
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 3}))
    (wrong / "model.safetensors").write_bytes((chip / "model.safetensors").read_bytes())
    with pytest.raises(ChipadaptError, match=r"config.num_hidden_layers=3 differs"):
        run(merge_cfg("chipalign", chip, wrong, tmp_path / "x"))

    calls = {"n": 0}
    original = ChipAlign.__call__

    def crash_midway(self, *args):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(ChipAlign, "__call__", crash_midway)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(merge_cfg("chipalign", chip, instruct, out))
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_statistics_recover_small_angles_between_close_tensors():
    torch.manual_seed(0)
    chip = torch.randn(1_000_003)  # not a multiple of the summation run length
    instruct = chip + 1e-3 * torch.randn_like(chip)
    c, i = chip.double(), instruct.double()
    exact = math.acos(float(torch.dot(c, i) / (c.norm() * i.norm())))
    stats = TensorStats()
    for start in range(0, chip.numel(), 300_000):  # in blocks, as the streaming runner adds them
        stats.add(chip[start : start + 300_000], instruct[start : start + 300_000])
    stats.finish()
    assert math.acos(stats.cos) == pytest.approx(exact, rel=1e-3)
    assert stats.norm_chip == pytest.approx(float(c.norm()), rel=1e-9)


def test_the_sweep_report_says_before_the_sweep_when_a_metrics_task_is_not_evaluated(caplog):
    import logging

    from omegaconf import OmegaConf

    from chipadapt.merge.sweep_report import LambdaSweepReport

    report = LambdaSweepReport("perplexity.domain.bpb", False, "ifeval.prompt_loose")
    with caplog.at_level(logging.WARNING):
        report.on_multirun_start(OmegaConf.create({"eval": {"perplexity": {}, "ifeval": {}}}))
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        report.on_multirun_start(OmegaConf.create({"eval": {"ifeval": {}}}))
    assert "lambda_sweep.domain_metric=perplexity.domain.bpb is of no task this sweep evaluates" in caplog.text
    assert "instruct_metric" not in caplog.text
