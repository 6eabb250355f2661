"""Shared model plumbing for tasks: log-likelihood of continuations, and generation (models/text_generation.py)."""

from chipadapt.eval.loglikelihood import loglikelihoods
from chipadapt.models.text_generation import generate

__all__ = ["continuation_logprobs", "generate"]


def continuation_logprobs(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int,
    max_length: int,
    add_special_tokens: bool = False,
    progress: str | None = None,
) -> list[float]:
    """Sum of log-probabilities of each continuation given its context (lm-eval's loglikelihood);
    `batch_size` packed rows per forward (eval/loglikelihood.py)."""
    return loglikelihoods(model, tokenizer, pairs, batch_size, max_length, add_special_tokens, progress)
