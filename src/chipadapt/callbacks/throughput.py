"""Tokens per second of training, per optimizer step and over the whole run (validation excluded)."""

import time

import lightning as L


class TokenThroughput(L.Callback):
    def __init__(self):
        self.tokens = 0  # real (attended) tokens, all processes
        self.seconds = 0.0
        self._step_tokens = 0
        self._step_start: float | None = None
        self._last_step = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._step_start is None:
            self._step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._step_tokens += int(batch["attention_mask"].sum()) * trainer.world_size
        if trainer.global_step == self._last_step:  # still accumulating gradients
            return
        self._last_step = trainer.global_step
        elapsed = time.perf_counter() - self._step_start
        self.tokens += self._step_tokens
        self.seconds += elapsed
        pl_module.log("train/tokens_per_s", self._step_tokens / elapsed, prog_bar=True, on_step=True)
        pl_module.log("train/tokens_seen", float(self.tokens), on_step=True)
        self._step_tokens = 0
        self._step_start = None

    def on_validation_start(self, trainer, pl_module) -> None:
        # A step that straddles validation would count its time; start the clock afresh.
        self._step_start = None

    # Saved in checkpoints, so the token count of a resumed run continues from where it stopped.
    def state_dict(self) -> dict:
        return {"tokens": self.tokens, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.tokens, self.seconds = state_dict["tokens"], state_dict["seconds"]

    @property
    def mean_tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
