"""Bi-encoder contrastive training (InfoNCE over in-batch and hard negatives).

The loss is Tevatron's: query i's target is its own positive at column i * n_passages among all
passages of the batch; under DDP every process's embeddings are gathered first, so each query also
sees the other devices' passages as negatives. Scores are cosine similarities divided by a
temperature (normalised embeddings need one well below 1.0 to give the softmax a useful range).
"""

import lightning as L
import torch
import torch.distributed as dist
from tevatron.loss import DistributedContrastiveLoss, SimpleContrastiveLoss

from chipadapt.models.checkpointing import enable_activation_checkpointing
from chipadapt.modules.optim import optimizers_for


class BiEncoderModule(L.LightningModule):
    def __init__(
        self, encoder: torch.nn.Module, n_passages: int, temperature: float, optim, gradient_checkpointing: bool
    ):
        """`encoder`: a retrieval.encoder.TextEncoder (query/passage batches -> normalised embeddings).
        `gradient_checkpointing`: keep only each layer's input and recompute the rest in the backward
        pass; the activations of a batch's passages, not the weights, set this stage's memory peak."""
        super().__init__()
        self.encoder, self.n_passages, self.temperature, self.optim = encoder, n_passages, temperature, optim
        if gradient_checkpointing:
            enable_activation_checkpointing(encoder.model, "retriever.train.gradient_checkpointing")
        self.val_results: dict[str, float] = {}
        self.last_val_step: int | None = None
        self._val = []

    def setup(self, stage: str) -> None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        # scale_loss: DDP averages gradients over processes; the gathered loss is scaled back up.
        self.loss_fn = (
            DistributedContrastiveLoss(n_target=self.n_passages, scale_loss=True)
            if distributed
            else SimpleContrastiveLoss(n_target=self.n_passages)
        )

    def forward(self, batch):
        return self.encoder(**batch["query"]), self.encoder(**batch["passages"])

    def training_step(self, batch, batch_idx):
        q, p = self(batch)
        loss = self.loss_fn(q / self.temperature, p)
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=q.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        q, p = self(batch)
        scores = q @ p.T
        target = torch.arange(q.shape[0], device=q.device) * self.n_passages
        loss = torch.nn.functional.cross_entropy(scores / self.temperature, target, reduction="sum")
        rank = (scores > scores.gather(1, target[:, None])).sum(1)  # 0 = positive ranked first
        self._val.append((float(loss), int((rank == 0).sum()), float((1.0 / (rank + 1)).sum()), q.shape[0]))

    def on_validation_epoch_end(self) -> None:
        self.last_val_step = self.global_step
        if not self._val:
            return
        loss, top1, rr, n = (sum(x[i] for x in self._val) for i in range(4))
        self.val_results = {"val/loss": loss / n, "val/in_batch_acc": top1 / n, "val/in_batch_mrr": rr / n}
        self.log_dict(self.val_results)
        self._val = []

    def configure_optimizers(self):
        return optimizers_for(self.encoder, self.optim, self.trainer)
