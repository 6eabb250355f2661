"""What writes chat prompts in place of the tokenizer's chat template, where a caller sets one: a function of
(prompts, tokenizer) -> prompts. evaluate.py sets it for a SteerLM model's attributes (eval/steering.py);
generation itself (models/text_generation.py) knows nothing of SteerLM. A module of its own, importing
nothing heavy: evaluate.py imports eval/steering.py before its checks, and text_generation imports torch
and transformers (seconds of a refused command)."""

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

CHAT_PROMPTS: ContextVar[Callable[[list[str], Any], list[str]] | None] = ContextVar(
    "chipadapt_chat_prompts", default=None
)
