"""The causal-LM LightningModule. DAPT, SFT and SteerLM differ only in their data (labels of -100
mark tokens without loss), so they share this module."""

import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torchmetrics import CatMetric

from chipadapt.data.sft_batches import block_causal_mask
from chipadapt.errors import ChipadaptError
from chipadapt.manifest import fingerprint_input
from chipadapt.models.checkpointing import enable_activation_checkpointing
from chipadapt.models.hf_folder import empty_causal_lm, load_causal_lm, load_tokenizer
from chipadapt.models.lora import apply_lora
from chipadapt.models.token_bytes import added_space_bytes, token_byte_lengths
from chipadapt.modules.loss_guard import LossSpikeGuard
from chipadapt.modules.optim import optimizers_for
from chipadapt.modules.val_figures import VAL_METRICS, perplexity, split_figures
from chipadapt.modules.val_items import batch_records, item_table, without_added_space

log = logging.getLogger(__name__)

__all__ = ["VAL_METRICS", "CausalLMModule", "perplexity", "step_total"]


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
        read_weights: bool = True,
    ):
        """`val_split_names`: the DataModule's validation splits, in the order of its loaders.
        `read_weights` false: the model's architecture alone, on the meta device (a rank other than 0
        under FSDP's rank-0 loading, whose shards FSDP fills from rank 0: scaleout/rank0_load.py).
        With LoRA the adapters are then made on the meta device too, and FSDP gives them rank 0's
        values with the rest (scaleout/adapter_units.py shards them apart from the frozen base)."""
        super().__init__()
        lora = peft is not None and bool(peft.get("r"))
        self.model_folder = Path(model_folder)
        # Weights that train are float32 master weights whatever `dtype` says: at ChipNeMo's lr 5e-6
        # an Adam update (~lr) is below half the bf16 spacing of a 0.02 weight and rounds away (92% of
        # a model's weights never moved). bf16 compute comes from trainer.precision=bf16-mixed;
        # `dtype` is what frozen weights (LoRA's base) and inference use.
        build = load_causal_lm if read_weights else empty_causal_lm
        self.model = build(Path(model_folder), dtype if lora else "float32", attn_implementation)
        self.model.train()  # from_pretrained returns eval mode (dropout off); Lightning keeps the mode it finds
        if gradient_checkpointing:
            enable_activation_checkpointing(self.model, "model.gradient_checkpointing")
            self.model.config.use_cache = False
        self.optim = optim
        self.loss_guard = LossSpikeGuard(**loss_guard) if loss_guard else LossSpikeGuard(False, 0.0, 1, 0)
        self.peft_cfg = peft
        if lora:
            self.model = apply_lora(self.model, peft, Path(model_folder))
        # Each parameter's rank as built: FSDP flattens every parameter into a 1-D shard view before
        # configure_optimizers, where weight decay, which goes by rank, would then decay nothing.
        self.param_ndims = {name: param.ndim for name, param in self.model.named_parameters()}
        rows = self.model.get_output_embeddings().weight.shape[0]
        tokenizer = load_tokenizer(Path(model_folder))
        self.register_buffer("token_bytes", token_byte_lengths(tokenizer, rows), persistent=False)
        # The space a tokenizer prepends to a text (Llama-2's dummy prefix), counted in a document's first
        # token: no byte of the document, taken off as evaluate.py's perplexity takes it off (0: none added).
        # Always that of a text not starting with a space: token ids cannot tell one that does (Metaspace's
        # prepend_scheme first then prepends nothing and gives the same ids), so a held-out document that
        # starts with a space counts one byte short here, where evaluate.py's perplexity, which has the
        # text, counts it whole (tests/test_validation_prefix_space.py holds the gap to that one byte).
        self.added_space = added_space_bytes(tokenizer, self.token_bytes)[0]
        self.val_split_names = list(val_split_names)
        # Per split, the sums of each item (a held-out document) a validation scored, as records
        # [row, item, nll, tokens, bytes] (modules/val_items.py): perplexity, loss and bits per byte
        # come from their totals, their intervals from the items. CatMetric gathers every process's
        # records (of any count). NaN is kept (torchmetrics' default drops it with a warning):
        # diverged weights gave a sum of 0, reported as loss 0, ppl 1, the best run of the sweep.
        self.val_records = torch.nn.ModuleDict(
            {name: CatMetric(nan_strategy="disable") for name in self.val_split_names}
        )
        # The mean loss of the current optimizer step: its micro-batches' losses, summed, and their count.
        self.step_loss_sum = torch.zeros(())
        self.step_micro_batches = 0
        self.val_results: dict[str, dict[str, float]] = {}
        # The last validation's item table per split, [item, nll, tokens, bytes] rows: what a later
        # validation on the same items is paired with (the before/after comparison).
        self.val_items: dict[str, np.ndarray] = {}
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

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Every micro-batch goes backward, even a spiking one: the guard decides per optimizer step,
        # the same way on every process (optimizer_step), and a skipped step drops all its gradients.
        loss = self(batch).loss
        self.step_loss_sum = self.step_loss_sum.to(loss.device) + loss.detach().float()
        self.step_micro_batches += 1
        return loss

    def step_loss(self) -> float:
        """The optimizer step's loss, the mean over its micro-batches on every process: what the
        gradient averages (each micro-batch's loss is the mean over its labelled tokens), the same
        number on every process and for any number of processes."""
        total = step_total(self.step_loss_sum, self.step_micro_batches).to(self.device)
        total = self.trainer.strategy.reduce(total, reduce_op="sum")
        self.step_loss_sum, self.step_micro_batches = torch.zeros((), device=self.device), 0
        return float(total[0] / total[1])

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        def closure():
            result = optimizer_closure()  # the step's last micro-batch: forward and backward
            loss = self.step_loss()  # all-reduced: every process reaches the same verdict
            if self.loss_guard.enabled and not self.loss_guard.admit(loss):
                # No update at all: parameters without a gradient are left alone by the optimizer
                # (and their Adam state too); None also tells mixed precision to skip its step.
                optimizer.zero_grad(set_to_none=True)
                self.log("train/skipped_steps", float(self.loss_guard.skipped), on_step=True)
                return None
            self.log("train/loss", loss, prog_bar=True, on_step=True)
            return result

        optimizer.step(closure=closure)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            # FSDP shards the gradients: only FSDP itself can compute their global norm.
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )

    def setup(self, stage: str) -> None:
        from lightning.pytorch.strategies import DeepSpeedStrategy

        if self.loss_guard.enabled and isinstance(self.trainer.strategy, DeepSpeedStrategy):
            # DeepSpeed's engine owns its gradients and steps itself: a step cannot be skipped from
            # here (returning None stops it with an error at the first spike, hours into a run).
            log.warning("loss_guard: off under DeepSpeed, which cannot skip an optimizer step from the module")
            self.loss_guard.enabled = False

    def frozen_weight_names(self) -> set[str]:
        """With LoRA, the base weights (state-dict names): they never change, and resume loads them
        again from the model folder it fingerprints, so checkpoints leave them out (~140 GB a save at
        70B). Empty under FSDP/DeepSpeed, whose sharded checkpoints have their own layout."""
        from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

        if not self.peft_cfg or not self.peft_cfg.get("r"):
            return set()
        if not isinstance(self.trainer.strategy, (SingleDeviceStrategy, DDPStrategy)):
            return set()
        trained = {f"model.{name}" for name, param in self.model.named_parameters() if param.requires_grad}
        # From the state dict, not named_parameters(): a tied lm_head is a name of its own there.
        return {name for name in self.state_dict() if name.startswith("model.") and name not in trained}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loss_guard"] = self.loss_guard.state_dict()
        frozen = self.frozen_weight_names()
        if frozen:
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
            checkpoint["frozen_weights_left_out"] = True
            # What they are: resume refuses another base (a DAPT run trained on in place meanwhile).
            checkpoint["frozen_weights_fingerprint"] = fingerprint_input(self.model_folder)["fingerprint"]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.loss_guard.load_state_dict(checkpoint.get("loss_guard", {}))
        self.restore_frozen_weights(checkpoint)

    def restore_frozen_weights(self, checkpoint: dict) -> None:
        """A checkpoint saved without the frozen base (LoRA) gets it back from the weights this module
        loaded from the model folder, once that folder is the one the adapters were trained on; strict
        loading still checks the rest. Resume and export.py both read checkpoints through this."""
        if not checkpoint.get("frozen_weights_left_out"):
            return
        recorded, now = checkpoint.get("frozen_weights_fingerprint"), fingerprint_input(self.model_folder)
        if recorded and recorded != now["fingerprint"]:
            raise ChipadaptError(
                f"model.path: {self.model_folder} has changed since the checkpoint's LoRA adapters were "
                "trained on it (its content fingerprint differs; the checkpoint leaves the frozen base out): "
                "resuming would put them on other weights; restore the folder, or start over with resume=false"
            )
        trained = {f"model.{name}" for name, param in self.model.named_parameters() if param.requires_grad}
        own = {k: v for k, v in self.state_dict().items() if k.startswith("model.") and k not in trained}
        checkpoint["state_dict"] = {**own, **checkpoint["state_dict"]}

    def sum_dtype(self) -> torch.dtype:
        """float64 for validation sums; Apple's MPS has no float64, float32 there."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def on_validation_epoch_start(self) -> None:
        # trainer.precision=*-true casts the whole module, metric states included (a bf16 sum of
        # log-likelihoods read 458.000, then 444.000): the sums are kept in float64.
        for records in self.val_records.values():
            records.set_dtype(self.sum_dtype())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.model(**self.model_inputs(batch)).logits
        # Position t predicts token t+1; the sums run over labelled tokens of all batches.
        logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
        token_nll = torch.nn.functional.cross_entropy(  # log-softmax in float32, whatever the model computes in
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none"
        ).view_as(labels)
        if "row_index" not in batch:
            # A DataModule that does not name its rows: each row is an item, numbered apart per process
            # (a padded repeat under DDP then counts twice, as before items were kept).
            first = (batch_idx * self.trainer.world_size + self.global_rank) * labels.shape[0]
            batch = {**batch, "row_index": torch.arange(first, first + labels.shape[0], device=labels.device)}
        records = batch_records(batch, token_nll, labels, self.token_bytes, self.sum_dtype())
        # Packed documents (DAPT) by the datamodule's word, as the run's byte-count mark is chosen
        # (stages/common.py validation_settings): SFT's rows are conversations, and a datamodule that numbers
        # its items without saying so keeps its bytes as the mark it records counts them.
        if self.added_space and getattr(self.trainer.datamodule, "packs_documents", False):
            records = without_added_space(records, batch, labels, self.token_bytes, self.added_space)
        self.val_records[self.val_split_names[dataloader_idx]].update(records)

    def on_validation_epoch_end(self) -> None:
        results, items = {}, {}
        # Each split's item -> group where the datamodule holds items out together (SFT: OASST's message
        # trees, data/sft_datamodule.py): the intervals resample whole groups then (modules/val_figures.py).
        groups = getattr(self.trainer.datamodule, "val_groups", None) or {}
        for name in self.val_split_names:
            records = self.val_records[name]
            if not records.update_called:
                continue
            items[name] = item_table(records.compute().double().cpu().numpy())  # every process's, once each
            records.reset()
            results[name] = split_figures(items[name], groups.get(name))
            for key in VAL_METRICS:
                self.log(f"val/{name}/{key}", results[name][key])
        self.val_results, self.val_items = results, items
        self.last_val_step = self.global_step
        diverged = self.divergence()
        if diverged and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            # A validation inside fit (val_check_interval): non-finite weights do not come back, so
            # training stops here instead of running on to max_steps; the run then fails as diverged.
            log.warning("training diverged (%s): stopping", diverged)
            self.trainer.should_stop = True

    def divergence(self) -> str | None:
        """What shows that the weights of the last validation have diverged: its first loss or bits per
        byte that is not finite (NaN or inf weights give NaN). None when every one is finite: a loss
        too large for its exp (ppl inf) is a bad model, reported as measured, not a failed run."""
        for name, values in self.val_results.items():
            for key in ("loss", "bpb"):
                if not math.isfinite(values[key]):
                    return f"val/{name}/{key} is {values[key]} at step {self.last_val_step}"
        return None

    def configure_optimizers(self):
        return optimizers_for(self.model, self.optim, self.trainer, ndims=self.param_ndims)


def step_total(loss_sum: torch.Tensor, micro_batches: int) -> torch.Tensor:
    """[sum of the step's micro-batch losses, their count] on the device the sum is on (CUDA in
    training: a count made on the CPU beside it fails to stack)."""
    return torch.stack([loss_sum, torch.tensor(float(micro_batches), device=loss_sum.device)])
