"""A callback that leaves the weights as a diverged run does, once training reaches a given step
(tests of how a diverged run is told and recorded): `nan` puts a NaN in the output layer, as an
overflowing update does; `scale` multiplies it, for a loss that is huge but finite. A module with no
causal LM (the retriever's, the reranker's) gets the NaN in its first trained tensor."""

import lightning as L
import torch


class SpoilWeights(L.Callback):
    def __init__(self, step: int = 1, nan: bool = True, scale: float = 1.0):
        self.step, self.nan, self.scale, self.done = step, nan, scale, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.done:
            self.done = True
            with torch.no_grad():
                lm = getattr(pl_module, "model", None)
                embeddings = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
                weight = embeddings.weight if embeddings is not None else next(pl_module.parameters())
                weight.mul_(self.scale)
                if self.nan:
                    weight[0, 0] = float("nan")
