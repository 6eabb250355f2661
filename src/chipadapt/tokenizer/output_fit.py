"""`tokenizer.adapt.init.fit`: the new tokens' OUTPUT rows fitted to the domain training text.

An output row changes no hidden state. With every other weight fixed, the log-likelihood of the
augmented tokenization is a concave function of the new output rows alone: a softmax regression on
the model's final hidden states. So the rows can be fitted to its optimum from hidden states computed
once, in forward passes, where the warm-up (warmup.py) trains by backpropagation through the whole
model for a few steps:
- hidden states of `windows` windows of `seq_len` tokens of training text (windows.py), computed
  with the model as the static init (and the warm-up, if any) left it;
- the log-sum-exp over every other row computed once; L-BFGS on the new rows, from their rows before
  the fit;
- an L2 pull toward those rows: the objective is the summed cross-entropy plus `l2` x each row's
  squared distance from its row before the fit (a Gaussian prior on the change, the same strength for
  every row whatever the sample's size or the number of new tokens). A token the sample holds a few
  times moves a little, a token it never holds stays near its static row. Without it the fit overfits
  the sample (experiments/LOG.md, 2026-12-05 session 11: the training loss fell furthest while
  held-out text got worse than with the static rows).
Every other row stays bit-identical (checked). Models that scale or soft-cap their logits after the
output rows (Gemma-2, Cohere, Granite) are refused: the regression would fit the wrong logits.
"""

import logging
import time

import torch

from chipadapt.errors import ChipadaptError
from chipadapt.tokenizer.windows import TrainingWindows

log = logging.getLogger(__name__)

# Logits held at once, [positions, rows]: 256 MB of fp32 whatever the vocabulary's size.
LOGIT_BUDGET = 2**26
# Config keys of models whose logits are not the output rows times the final hidden state.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def chunk_rows(columns: int) -> int:
    return max(1, LOGIT_BUDGET // max(columns, 1))


class OutputRowFit:
    def __init__(
        self,
        windows: int,
        seq_len: int,
        batch_size: int,
        general_fraction: float,
        l2: float,
        iterations: int,
        held_out: float | None,
        seed: int,
    ):
        if windows < 1 or seq_len < 2 or batch_size < 1 or iterations < 1 or l2 < 0 or not 0 <= general_fraction < 1:
            raise ChipadaptError(
                f"tokenizer.adapt.init.fit: windows={windows}, batch_size={batch_size} and iterations={iterations} "
                f"must be >= 1, seq_len={seq_len} >= 2, l2={l2} >= 0, general_fraction={general_fraction} in [0, 1) "
                "(fit=null: no fit)"
            )
        self.windows, self.seq_len, self.batch_size = windows, seq_len, batch_size
        self.general_fraction, self.l2, self.iterations = general_fraction, l2, iterations
        self.held_out, self.seed = held_out, seed

    def settings(self) -> dict:
        return dict(vars(self))

    def run(
        self,
        model,
        backend,
        domain: dict[str, list],
        general: dict[str, list],
        new_ids: list[int],
        separator,
        validation: list | None = None,  # the report's general documents (windows.training_texts)
    ) -> dict | None:
        """Fit the new output rows of `model` in place (arguments as `EmbeddingWarmup.run`); returns
        what the report records (None without new tokens: nothing to fit)."""
        start = time.perf_counter()
        if not new_ids:
            log.info("output fit: no new tokens, nothing to fit")
            return None
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        scaled = [k for k in LOGIT_TRANSFORMS if getattr(config, k, None) not in (None, 1, 1.0)]
        if scaled:
            raise ChipadaptError(
                f"tokenizer.adapt.init.fit: this model ({config.model_type}) transforms its logits after the output "
                f"rows ({', '.join(scaled)}), which the fit does not model; set tokenizer.adapt.init.fit=null"
            )
        head = model.get_output_embeddings().weight
        if head is model.get_input_embeddings().weight:
            raise ChipadaptError("tokenizer.adapt.init.fit needs untied embeddings (resize_for_new_tokens unties them)")
        sampler = TrainingWindows(
            backend,
            domain,
            general,
            separator,
            self.seq_len + 1,  # a window's last token is only a target
            self.general_fraction,
            self.held_out,
            "tokenizer.adapt.init.fit",
            validation,
        )
        hidden, targets = self._hidden_states(model, sampler)
        before = head.detach().cpu().clone()
        new = torch.tensor(sorted(new_ids), dtype=torch.long)
        is_new = torch.zeros(head.shape[0], dtype=torch.bool)
        is_new[new] = True
        column = torch.full((head.shape[0],), -1, dtype=torch.long)
        column[new] = torch.arange(len(new))
        target_column = column[targets]
        other_lse, other_target = self._other_rows(hidden, targets, before, is_new)
        prior = before[new].float()
        rows = prior.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [rows], lr=1.0, max_iter=self.iterations, history_size=20, line_search_fn="strong_wolfe"
        )
        chunk = chunk_rows(len(new))

        def data_loss() -> float:
            """Mean cross-entropy (nats per position) with the current rows; gradients accumulate in rows.grad."""
            total = 0.0
            for i in range(0, len(hidden), chunk):
                part = slice(i, i + chunk)
                logits = hidden[part] @ rows.T
                lse = torch.logaddexp(other_lse[part], torch.logsumexp(logits, dim=-1))
                picked = logits.gather(1, target_column[part].clamp(min=0)[:, None])[:, 0]
                target = torch.where(target_column[part] >= 0, picked, other_target[part])
                part_loss = (lse - target).sum() / len(hidden)
                if part_loss.requires_grad:
                    part_loss.backward()
                total += float(part_loss.detach())
            return total

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = data_loss()
            # The prior, on the summed cross-entropy's scale: divided by the positions as the data term is.
            penalty = self.l2 * (rows - prior).pow(2).sum() / len(hidden)
            penalty.backward()
            return torch.tensor(loss + float(penalty.detach()))

        with torch.no_grad():
            first_loss = data_loss()
        optimizer.step(closure)
        with torch.no_grad():
            last_loss = data_loss()  # at the rows kept (a line search's last trial may have been rejected)
            head[new.to(head.device)] = rows.detach().to(head.device, head.dtype)
        if not torch.equal(head.detach().cpu()[~is_new], before[~is_new]):
            raise RuntimeError("tokenizer output fit changed a base-vocabulary row")  # a bug, not bad input
        seen = target_column[target_column >= 0]
        result = {
            **self.settings(),
            "general_fraction_used": sampler.general_fraction,
            "training_tokens": sampler.tokens(),
            "positions": len(targets),
            "new_token_targets": int(len(seen)),
            "new_tokens_seen": int(seen.unique().numel()),
            "first_loss": round(first_loss, 4),  # mean cross-entropy, nats per token
            "last_loss": round(last_loss, 4),
            "rms_change": round(float((rows.detach() - prior).pow(2).mean().sqrt()), 5),
            "evaluations": int(optimizer.state[rows].get("func_evals", 0)),
            "seconds": round(time.perf_counter() - start, 1),
        }
        log.info(
            "output fit: %d positions (%d with a new token as target, %d distinct), loss %.4f -> %.4f in %.0fs",
            result["positions"],
            result["new_token_targets"],
            result["new_tokens_seen"],
            result["first_loss"],
            result["last_loss"],
            result["seconds"],
        )
        return result

    @torch.no_grad()
    def _hidden_states(self, model, sampler: TrainingWindows) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states (after the last norm: what the output rows multiply) and next tokens."""
        generator = torch.Generator().manual_seed(self.seed)
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        was_training = model.training
        model.eval()
        states, targets = [], []
        try:
            for done in range(0, self.windows, self.batch_size):
                batch = sampler.batch(min(self.batch_size, self.windows - done), generator)
                out = base(input_ids=batch[:, :-1].to(model.device), use_cache=False).last_hidden_state
                states.append(out.reshape(-1, out.shape[-1]).float().cpu())  # the fit runs on the CPU
                targets.append(batch[:, 1:].reshape(-1))
        finally:
            model.train(was_training)
        return torch.cat(states), torch.cat(targets)

    @staticmethod
    @torch.no_grad()
    def _other_rows(hidden, targets, head, is_new) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position: log-sum-exp of the logits of every row the fit leaves alone, and the
        target's logit (used where the target is not a new token)."""
        lse, target = [], []
        other = head.float()
        chunk = chunk_rows(other.shape[0])
        for i in range(0, len(hidden), chunk):
            logits = hidden[i : i + chunk] @ other.T
            target.append(logits.gather(1, targets[i : i + chunk, None])[:, 0])
            lse.append(torch.logsumexp(logits.masked_fill_(is_new, float("-inf")), dim=-1))
        return torch.cat(lse), torch.cat(target)
