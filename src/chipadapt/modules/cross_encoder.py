"""Cross-encoder reranker training: each query's positive against its hard negatives, listwise.

A batch holds `n_passages` pairs per query (the positive first); the scores of one query's pairs
are a softmax over its candidates and the loss is the positive's negative log-likelihood, the
objective of Nogueira's and Tevatron's rerankers. Unlike the bi-encoder there are no in-batch
negatives: every extra candidate costs a full forward pass of the pair.
"""

import lightning as L
import torch

from chipadapt.errors import ChipadaptError
from chipadapt.modules.optim import optimizers_for


class CrossEncoderModule(L.LightningModule):
    def __init__(self, scorer: torch.nn.Module, n_passages: int, optim, head_lr: float | None):
        """`scorer`: a retrieval.pair_scorer.PairScorer (tokenised query/passage pairs -> one score each);
        `head_lr`: the new scoring head's learning rate (None: the optimizer's). A head started at random
        beside a pretrained body needs a larger step than the body: at the body's 2e-5 its weights move
        about 0.002 in 100 steps against their initial 0.02."""
        super().__init__()
        if head_lr is not None and not head_lr > 0:
            raise ChipadaptError(f"reranker.train.head_lr: {head_lr!r} is not a learning rate above 0 (null: optim.lr)")
        self.scorer, self.n_passages, self.optim, self.head_lr = scorer, n_passages, optim, head_lr
        scorer.train()  # from_pretrained hands the model over in eval mode (dropout off)
        # The listwise loss does not change when every candidate's score moves by the same amount, so
        # the one-output head's bias has no true gradient: what it gets is float noise, which Adam
        # would scale up into a random walk (and which differs between otherwise identical runs).
        for name, param in scorer.named_parameters():
            if name.endswith("bias") and param.numel() == 1 and "classifier" in name:
                param.requires_grad_(False)
        self.val_results: dict[str, float] = {}
        self.last_val_step: int | None = None
        self._val = []

    def forward(self, batch) -> torch.Tensor:
        """(queries, n_passages) scores; column 0 is each query's positive."""
        return self.scorer(**batch["pairs"]).view(-1, self.n_passages)

    def training_step(self, batch, batch_idx):
        scores = self(batch)
        loss = torch.nn.functional.cross_entropy(
            scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device)
        )
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=len(scores))
        return loss

    def validation_step(self, batch, batch_idx):
        scores = self(batch)
        target = torch.zeros(len(scores), dtype=torch.long, device=scores.device)
        loss = torch.nn.functional.cross_entropy(scores, target, reduction="sum")
        rank = (scores[:, 1:] > scores[:, :1]).sum(1)  # 0 = the positive ranked first
        self._val.append((float(loss), int((rank == 0).sum()), float((1.0 / (rank + 1)).sum()), len(scores)))

    def on_validation_epoch_end(self) -> None:
        self.last_val_step = self.global_step
        if not self._val:
            return
        loss, top1, rr, n = (sum(x[i] for x in self._val) for i in range(4))
        self.val_results = {"val/loss": loss / n, "val/group_acc": top1 / n, "val/group_mrr": rr / n}
        self.log_dict(self.val_results)
        self._val = []

    def configure_optimizers(self):
        heads = None if self.head_lr is None else {prefix: self.head_lr for prefix in self.scorer.head_parameters}
        return optimizers_for(self.scorer, self.optim, self.trainer, heads)
