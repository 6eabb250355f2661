"""The causal-LM LightningModule. DAPT, SFT and SteerLM differ only in their data (labels of -100
mark tokens without loss), so they share this module."""

import logging
import math
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig
from torchmetrics import SumMetric
from torchmetrics.text import Perplexity

from chipadapt.data.sft_batches import block_causal_mask
from chipadapt.models.checkpointing import enable_activation_checkpointing
from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
from chipadapt.models.lora import apply_lora
from chipadapt.models.token_bytes import token_byte_lengths
from chipadapt.modules.loss_guard import LossSpikeGuard
from chipadapt.modules.optim import optimizers_for

log = logging.getLogger(__name__)


# Each validation split's metrics, logged as val/<split>/<metric> (what optimized_metric may name).
VAL_METRICS = ("ppl", "loss", "bpb")


class CausalLMModule(L.LightningModule):
    def __init__(
        self,
        model_folder: str | Path,
        dtype: str,
        attn_implementation: str,
        gradient_checkpointing: bool,
        optim: DictConfig,
        loss_guard: DictConfig | None = None,
        peft: DictConfig | None = None,
        val_split_names: list[str] = (),
    ):
        """`val_split_names`: the DataModule's validation splits, in the order of its loaders."""
        super().__init__()
        self.model = load_causal_lm(Path(model_folder), dtype, attn_implementation)
        self.model.train()  # from_pretrained returns eval mode (dropout off); Lightning keeps the mode it finds
        if gradient_checkpointing:
            enable_activation_checkpointing(self.model, "model.gradient_checkpointing")
            self.model.config.use_cache = False
        self.optim = optim
        self.loss_guard = LossSpikeGuard(**loss_guard) if loss_guard else LossSpikeGuard(False, 0.0, 1, 0)
        self.peft_cfg = peft
        if peft is not None and peft.get("r"):
            self.model = apply_lora(self.model, peft, Path(model_folder))
        rows = self.model.get_output_embeddings().weight.shape[0]
        self.register_buffer(
            "token_bytes", token_byte_lengths(load_tokenizer(Path(model_folder)), rows), persistent=False
        )
        self.val_split_names = list(val_split_names)
        self.val_metrics = torch.nn.ModuleDict(
            {
                name: torch.nn.ModuleDict(
                    {"ppl": Perplexity(ignore_index=-100), "nll": SumMetric(), "bytes": SumMetric()}
                )
                for name in self.val_split_names
            }
        )
        self.val_results: dict[str, dict[str, float]] = {}
        self.last_val_step: int | None = None

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Packed rows (SFT with `segment_ids`): position ids restart per conversation, and attention
        stays inside each one — flash-attention finds the boundaries from the position ids, sdpa and
        eager get a block-diagonal causal mask."""
        if "segment_ids" not in batch:
            return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
        if self.model.config._attn_implementation != "flash_attention_2":
            inputs["attention_mask"] = block_causal_mask(batch["segment_ids"], self.model.dtype)
        return inputs

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(**self.model_inputs(batch), labels=batch["labels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss = self(batch).loss
        # float() waits for the device: only when the guard is on.
        if self.loss_guard.enabled and not self.loss_guard.admit(float(loss.detach())):
            # Returning None skips backward and the optimizer step for this batch.
            self.log("train/skipped_steps", float(self.loss_guard.skipped), on_step=True)
            return None
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=batch["input_ids"].size(0))
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            # FSDP shards the gradients: only FSDP itself can compute their global norm.
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loss_guard"] = self.loss_guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.loss_guard.load_state_dict(checkpoint.get("loss_guard", {}))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.model(**self.model_inputs(batch)).logits
        metrics = self.val_metrics[self.val_split_names[dataloader_idx]]
        # Position t predicts token t+1; the metrics add up over labelled tokens of all batches.
        logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
        metrics["ppl"].update(logits, labels)
        nll = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
        )
        metrics["nll"].update(nll)
        metrics["bytes"].update(self.token_bytes[labels.clamp(min=0)].masked_fill(labels < 0, 0).sum())

    def on_validation_epoch_end(self) -> None:
        results = {}
        for name in self.val_split_names:
            metrics = self.val_metrics[name]
            if not metrics["ppl"].update_called:
                continue
            ppl = float(metrics["ppl"].compute())
            # Bits per byte of text: comparable across tokenizers (perplexity is per token).
            bpb = float(metrics["nll"].compute() / metrics["bytes"].compute().clamp(min=1)) / math.log(2)
            for metric in metrics.values():
                metric.reset()
            results[name] = dict(zip(VAL_METRICS, (ppl, math.log(ppl), bpb)))
            for key, value in results[name].items():
                self.log(f"val/{name}/{key}", value)
        self.val_results = results
        self.last_val_step = self.global_step

    def configure_optimizers(self):
        return optimizers_for(self.model, self.optim, self.trainer)
