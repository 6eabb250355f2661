"""GPU paths: bf16 mixed precision DAPT on the tiny model. Skipped without CUDA."""

import pytest
import torch
from conftest import compose, read_manifest

from chipadapt.pipeline import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_mixed_dapt_on_gpu_trains_and_saves_fp32_weights(tmp_path, tiny_overrides):
    cfg = compose([*tiny_overrides, "trainer=gpu", "trainer.max_steps=4", "optim.lr=1e-3"], tmp_path)
    result = train(cfg)
    assert result["global_step"] == 4
    assert result["after"]["domain"]["ppl"] < result["before"]["domain"]["ppl"]
    assert read_manifest(tmp_path)["config"]["trainer"]["precision"] == "bf16-mixed"
    from safetensors import safe_open

    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as handle:
        assert all(handle.get_tensor(name).dtype == torch.float32 for name in handle.keys())


def test_evaluation_runs_on_gpu_in_bf16(tmp_path, tiny_overrides):
    from conftest import write_jsonl

    from chipadapt.eval.run import evaluate_folder
    from chipadapt.models.hf_folder import resolve_model_folder

    cfg = compose(["model=tiny"], tmp_path)
    mcq = write_jsonl(tmp_path / "m.jsonl", [{"question": "q", "choices": ["module", "river"], "answer": 0}])
    from omegaconf import OmegaConf

    tasks = OmegaConf.create(
        {
            "perplexity": {
                "_target_": "chipadapt.eval.tasks.perplexity.PerplexityTask",
                "max_length": 128,
                "max_documents": 2,
                "max_tokens": None,
                "max_tokens_per_document": None,
                "max_chars_per_document": None,
                "splits": {"domain": {"path": cfg.data.sources.docs.path}},
            },
            "mcq": {
                "_target_": "chipadapt.eval.tasks.mcq.MCQTask",
                "path": str(mcq),
                "fewshot_path": None,
                "num_fewshot": 0,
                "limit": None,
                "style": "cloze",
                "batch_size": 4,
                "max_length": 128,
                "max_per_subject": None,
                "preset": "chipadapt",
                "subjects": None,
            },
        }
    )
    results = evaluate_folder(resolve_model_folder(cfg.model), tasks, "cuda", None, "float32", "sdpa", False)
    assert results["perplexity"]["domain.ppl"] > 1 and results["mcq"]["questions"] == 1


def test_fsdp_on_one_gpu_trains_and_gathers_a_full_hf_folder(tmp_path, tiny_overrides):
    # bf16-true: on one GPU FSDP falls back to NO_SHARD, whose bf16 mixed-precision gradients this torch
    # refuses ("grad_dtype"); multi-GPU FULL_SHARD runs bf16-mixed.
    cfg = compose(
        [
            *tiny_overrides,
            "trainer=fsdp",
            "trainer.devices=1",
            "trainer.precision=bf16-true",
            "trainer.max_steps=3",
            "optim.lr=1e-3",
            "stage.validate_before=false",
            "callbacks.checkpoint.every_n_train_steps=2",
        ],
        tmp_path,
    )
    result = train(cfg)
    assert result["global_step"] == 3
    from transformers import AutoModelForCausalLM

    from chipadapt.models.hf_folder import resolve_model_folder

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    start = AutoModelForCausalLM.from_pretrained(resolve_model_folder(cfg.model))
    assert saved.num_parameters() == start.num_parameters()
    pairs = list(zip(saved.named_parameters(), start.named_parameters()))
    assert all(a.shape == b.shape for (_, a), (_, b) in pairs)  # whole tensors, not one rank's shard
    # Every matrix trained (norm weights near 1.0 may round back to 1.0 in bf16-true after 3 small steps).
    assert all(not torch.equal(a.float(), b.float()) for (_, a), (_, b) in pairs if a.ndim >= 2)


def test_lora_on_gpu_in_bf16(tmp_path, tiny_overrides):
    pytest.importorskip("peft")
    cfg = compose(
        [
            *tiny_overrides,
            "trainer=gpu",
            "peft=lora_small",
            "peft.r=4",
            "trainer.max_steps=2",
            "stage.validate_before=false",
        ],
        tmp_path,
    )
    assert train(cfg)["global_step"] == 2
    assert (tmp_path / "adapter" / "adapter_config.json").is_file() and (tmp_path / "model" / "config.json").is_file()
