"""`tokenizer.adapt.init.warmup`: train only the NEW embedding rows briefly, after the static init.

No static rule (init_rows.py) gives a new token the probability of the whole piece sequence it
replaces, so the starting model pays for every new token it meets (`mean`: about +0.19 bits/byte on
the shared corpus). Published vocabulary expansions first train the new rows alone with the rest of
the model frozen: EEVE (Kim et al. 2024) trains the new input and output embeddings first,
Chinese-LLaMA's first stage trains the embeddings only. This does that, on the domain training text:
- only the new input and output rows learn: every other parameter is frozen and the gradient of the
  two embedding matrices is masked to the new rows of tokens in the step's batch, so the base
  vocabulary's rows stay bit-identical (checked after training) and text without new tokens keeps
  its hidden states;
- Adam without weight decay at a constant rate: rows whose gradient is always zero have zero moments,
  so their update is exactly zero; and any prefix of a run is itself a shorter budget (the budget
  measurement evaluates one run at several steps);
- windows of the domain training text, a `general_fraction` from general text (windows.py): the
  softmax there pushes the new output rows down in general contexts, which keeps general text's
  bits/byte unchanged.
"""

import logging
import time

import torch

from chipadapt.errors import ChipadaptError
from chipadapt.tokenizer.windows import TrainingWindows

log = logging.getLogger(__name__)


class EmbeddingWarmup:
    def __init__(
        self,
        steps: int,
        lr: float,
        seq_len: int,
        batch_size: int,
        general_fraction: float,
        held_out: float | None,
        seed: int,
    ):
        if steps < 1 or lr <= 0 or seq_len < 2 or batch_size < 1 or not 0 <= general_fraction < 1:
            raise ChipadaptError(
                f"tokenizer.adapt.init.warmup: steps={steps} and batch_size={batch_size} must be >= 1, lr={lr} > 0, "
                f"seq_len={seq_len} >= 2, general_fraction={general_fraction} in [0, 1) (warmup=null: no warm-up)"
            )
        self.steps, self.lr, self.seq_len, self.batch_size = steps, lr, seq_len, batch_size
        self.general_fraction, self.held_out, self.seed = general_fraction, held_out, seed

    def settings(self) -> dict:
        return dict(vars(self))

    def run(
        self,
        model,
        backend,
        domain: dict[str, list],
        general: dict[str, list],
        new_ids: list[int],
        separator: int | None,
        on_step=None,
        validation: list | None = None,  # the report's general documents (windows.training_texts)
    ) -> dict:
        """Train the new rows of `model` in place. `domain`/`general`: documents per training source;
        `backend`: the extended `tokenizers.Tokenizer`; `on_step(step)` is called after every step
        (the budget measurement evaluates there). Returns what the report records."""
        start = time.perf_counter()
        windows = TrainingWindows(
            backend,
            domain,
            general,
            separator,
            self.seq_len,
            self.general_fraction,
            self.held_out,
            "tokenizer.adapt.init.warmup",
            validation,
        )

        embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        if embed is head:
            raise ChipadaptError("tokenizer warm-up needs untied embeddings (resize_for_new_tokens unties them)")
        old_embed, old_head = embed.detach().clone(), head.detach().clone()
        mask = torch.zeros(embed.shape[0], 1, dtype=torch.bool)
        mask[new_ids] = True
        trainable = {id(embed), id(head)}
        frozen = [p for p in model.parameters() if id(p) not in trainable and p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        # Per step, only the new rows of tokens in the batch learn. The softmax gives every new output
        # row a small push down at every position; Adam scales that up to a full step, so rows of
        # tokens the warm-up never sees would sink (measured: no gain at 50 steps when all learn).
        active = {"rows": mask}
        hooks = [w.register_hook(lambda grad: torch.where(active["rows"], grad, 0.0)) for w in (embed, head)]
        optimizer = torch.optim.Adam([embed, head], lr=self.lr, weight_decay=0.0)
        generator = torch.Generator().manual_seed(self.seed)
        was_training = model.training
        model.eval()  # no dropout: the rows learn what the model computes at inference
        losses, measuring = [], 0.0
        try:
            for step in range(1, self.steps + 1):
                batch = windows.batch(self.batch_size, generator)
                in_batch = torch.zeros_like(mask)
                in_batch[batch.unique()] = True
                active["rows"] = mask & in_batch
                loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                if step == 1 or step % 25 == 0 or step == self.steps:
                    log.info("warm-up step %d/%d: loss %.4f", step, self.steps, losses[-1])
                if on_step is not None:
                    before = time.perf_counter()
                    on_step(step)
                    measuring += time.perf_counter() - before
        finally:
            for hook in hooks:
                hook.remove()
            for p in frozen:
                p.requires_grad_(True)
            model.train(was_training)
        keep = ~mask[:, 0]
        if not (torch.equal(embed[keep], old_embed[keep]) and torch.equal(head[keep], old_head[keep])):
            raise RuntimeError("tokenizer warm-up changed a base-vocabulary row")  # a bug, not bad input
        return {
            **self.settings(),
            "general_fraction_used": windows.general_fraction,
            "training_tokens": windows.tokens(),
            "tokens_seen": self.steps * self.batch_size * self.seq_len,
            "first_loss": round(losses[0], 4),
            "last_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),  # mean of the last 10 steps
            "seconds": round(time.perf_counter() - start - measuring, 1),  # without what on_step took
        }
