"""LoRA (peft) on the attention projections, as ChipNeMo's PEFT ablation; with an augmented
tokenizer the new token rows of the embedding stay trainable beside the adapters."""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.models.hf_folder import TOKENIZER_REPORT_NAME

log = logging.getLogger(__name__)


def new_token_ids(folder: Path) -> list[int]:
    """Ids of the tokens the domain tokenizer added (they were appended after the base vocabulary)."""
    report = folder / TOKENIZER_REPORT_NAME
    if not report.is_file():
        return []
    data = json.loads(report.read_text())
    return list(range(data["vocab_size_before"], data["vocab_size_after"]))


def apply_lora(model, cfg: DictConfig, folder: Path):
    from peft import LoraConfig, get_peft_model

    settings = OmegaConf.to_container(cfg, resolve=True)
    train_new_rows = settings.pop("train_new_token_rows")  # conf/peft/*.yaml sets it
    settings.pop("name", None)
    ids = new_token_ids(folder) if train_new_rows else []
    if ids:
        settings["trainable_token_indices"] = {"embed_tokens": ids}
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **settings))
    # The base stays in its dtype (frozen: bf16 is fine); adapters and new token rows train, so they
    # are float32 master weights, and so is their Adam state (a bf16 update of ~lr rounds away).
    for param in peft_model.parameters():
        if param.requires_grad and param.is_floating_point():
            param.data = param.data.float()
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info(
        "LoRA r=%s on %s: %s trainable of %s parameters (%.3f%%)%s",
        settings["r"],
        settings["target_modules"],
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
        f"; {len(ids)} new token rows trainable" if ids else "",
    )
    return peft_model


def merged_model(model):
    """The plain HF model to save: LoRA weights merged in when there are adapters."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
