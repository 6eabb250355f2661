"""evaluate.py's `generate.attributes`: the attribute string its generation tasks prompt a SteerLM model
with (as chat.py's generate.attributes does), written in the template and attribute order the model's
folder records (steerlm/attribute_record.py). evaluate.py had no way to give one: a SteerLM model was
scored unsteered, with nothing saying so. A folder that records an attribute order while no attributes
are given is warned about once. Only a task that generates in chat mode is steered (chat_generation):
the string and template join that task's finished-task key, so it is not kept when scored under other
attributes, and its results record the string (`steerlm_attributes`) where its prompts took it; a
log-likelihood task (perplexity, mcq) or a completion-mode one is neither keyed nor labelled by it. Each
evaluation starts unsteered (stop_steering): a job of a sweep whose tasks need no model does not inherit
the previous job's attributes. Refused for a merged model that records none, the message gives
merge.py's reason for leaving its inputs' record out (merge/steerlm_record.py)."""

import logging
from contextvars import ContextVar
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.data.chat_templates import attribute_string
from chipadapt.models.chat_prompts import CHAT_PROMPTS
from chipadapt.steerlm.attribute_record import ORDER_KEY, recorded_attribute_order, recorded_format
from chipadapt.steerlm.attribute_values import parse_attributes, unfamiliar_attributes

log = logging.getLogger(__name__)
KEY = "generate.attributes"
# (the SteerLM model's recorded template config, its attribute string), None: unsteered.
STEERING: ContextVar[tuple[dict, str] | None] = ContextVar("chipadapt_steering", default=None)
# How many prompt batches were written with the attributes: a task whose count rose was steered.
_written = {"batches": 0}


def _steered_prompts(prompts: list[str], tokenizer) -> list[str]:
    """Chat prompts in the model's recorded template with its attribute string, as it was trained."""
    from hydra.utils import instantiate

    template, string = STEERING.get()
    _written["batches"] += 1
    rendered = instantiate(template)(tokenizer=tokenizer)
    return [rendered.prompt([{"role": "user", "content": p}], string) for p in prompts]


def stop_steering() -> None:
    """Unsteered from here: the start of every evaluation, before a model is named."""
    STEERING.set(None)
    CHAT_PROMPTS.set(None)


def chat_generation(task) -> bool:
    """Whether `task` generates replies to chat prompts (what steering changes): a task without
    max_new_tokens generates nothing (perplexity, mcq, retrieval); VerilogEval's `mode` and IFEval's `chat`
    say whether its prompts are chat turns; the other generation tasks (eda_script, QA, bug summaries) chat."""
    if not hasattr(task, "max_new_tokens"):
        return False
    if hasattr(task, "mode"):
        return task.mode == "chat"
    return bool(getattr(task, "chat", True))


def steering_key(task) -> dict:
    """What `task`'s finished-task key holds of the steering (empty for a task it does not touch)."""
    return steering_record() if chat_generation(task) else {}


def prompts_written() -> int:
    """A count that rises each time prompts are written with the attributes (compare before and after a task)."""
    return _written["batches"]


def steering_label(task, written_before: int, recorded_results: dict | None = None) -> dict:
    """`steerlm_attributes` for the results of `task`, where its prompts took the attributes since the count
    was `written_before` (IFEval asks for chat prompts only where the tokenizer has a chat template).
    `recorded_results`: those of the finished run whose recorded answers the task took instead of prompting
    the model (AnswerJournal.took_recorded): their key holds the steering, so that run's prompts were the
    ones this run would have written, and its label says whether they took the attributes."""
    steering = STEERING.get()
    if steering is None or not chat_generation(task):
        return {}
    if recorded_results is not None:
        taken = recorded_results.get("steerlm_attributes") == steering[1]
    else:
        taken = prompts_written() != written_before
    return {"steerlm_attributes": steering[1]} if taken else {}


def start_steering(cfg: DictConfig, folder: Path) -> str | None:
    """Set the steering of this evaluation's generation for the model in `folder`; its attribute string."""
    text = OmegaConf.select(cfg, KEY, default=None)
    order = recorded_attribute_order(folder)
    stop_steering()  # not the last job's of a sweep run in this process
    if not text:
        if order is not None:
            log.warning(
                "%s/config.json records %s (a SteerLM model) but %s is not set: generation tasks prompt it without "
                "attributes (e.g. %s='quality:4,helpfulness:4,humor:0')",
                folder,
                ORDER_KEY,
                KEY,
                KEY,
            )
        return None
    order, template = recorded_format(folder, KEY)
    attributes = parse_attributes(str(text))
    if note := unfamiliar_attributes(attributes, order):
        log.warning("%s: %s; a SteerLM model has never seen it", KEY, note)
    string = attribute_string(attributes, order)
    STEERING.set((template, string))
    CHAT_PROMPTS.set(_steered_prompts)
    return string


def steering_record() -> dict:
    """What the finished-task keys and results hold of the steering (empty without one)."""
    steering = STEERING.get()
    return {} if steering is None else {"steerlm_attributes": steering[1], "steerlm_template": steering[0]}
