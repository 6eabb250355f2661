"""Skip a training step whose loss is not finite or far above the recent mean (ChipNeMo saw loss
spikes in DAPT). A skipped step does no backward pass and no optimizer update; it is counted and logged."""

import math
from collections import deque


class LossSpikeGuard:
    def __init__(self, enabled: bool, max_ratio: float, window: int, warmup_steps: int):
        self.enabled, self.max_ratio, self.warmup_steps = enabled, max_ratio, warmup_steps
        self.recent: deque[float] = deque(maxlen=window)
        self.skipped = 0

    def admit(self, loss: float) -> bool:
        """True when the step may go ahead; a skipped loss does not enter the running mean."""
        if not self.enabled:
            return True
        if not math.isfinite(loss):
            self.skipped += 1
            return False
        if len(self.recent) >= self.warmup_steps and loss > self.max_ratio * (sum(self.recent) / len(self.recent)):
            self.skipped += 1
            return False
        self.recent.append(loss)
        return True

    def state_dict(self) -> dict:
        return {"recent": list(self.recent), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.recent.extend(state.get("recent", []))
        self.skipped = state.get("skipped", 0)
