"""Text in, text out: prompts (through the chat template when asked) to completions, greedy with
refilled rows (models/generate.py) where the model allows it, else `model.generate`. Used by the
evaluation tasks and by anything else that generates (synthetic retrieval data)."""

import logging

import torch

from chipadapt.io.answer_journal import journal_for
from chipadapt.models.chat_prompts import CHAT_PROMPTS
from chipadapt.models.generate import greedy_generate, supports_slot_decoding

log = logging.getLogger(__name__)
# Tokenizers already warned about (by folder): a task generating in many batches warns once.
_WARNED_NO_TEMPLATE: set[str] = set()


def stop_token_ids(model, tokenizer) -> list[int] | None:
    """The ids a reply ends on: the tokenizer's end-of-sequence token (ChipNeMo's template ends every
    trained reply with it) and those of the model's generation_config, which may lack it."""
    ids = {tokenizer.eos_token_id} if getattr(tokenizer, "eos_token_id", None) is not None else set()
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids |= set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    return sorted(ids) or None


def uses_chat_template(tokenizer, chat: bool) -> bool:
    """Whether prompts go through the chat template: asked for and the tokenizer has one. Asked for
    without one (a base or DAPT model), prompts are given raw, and the caller must record that it did
    not chat (a score of raw prompts read as a chat score would compare unlike things): said once
    per model folder."""
    if not chat:
        return False
    if getattr(tokenizer, "chat_template", None):
        return True
    folder = str(getattr(tokenizer, "name_or_path", "") or "the model")
    if folder not in _WARNED_NO_TEMPLATE:
        _WARNED_NO_TEMPLATE.add(folder)
        log.warning("%s: chat was asked for but its tokenizer has no chat template; prompts are given raw", folder)
    return False


def encode(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    # lm-eval never adds a BOS in front of text that already starts with it.
    if add_special_tokens and tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        add_special_tokens = False
    return tokenizer.encode(text, add_special_tokens=add_special_tokens)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    batch_size: int,
    max_new_tokens: int,
    chat: bool,
    temperature: float = 0.0,
    top_p: float = 1.0,
    add_special_tokens: bool = False,
    progress: str | None = None,
) -> list[str]:
    """Completions (greedy at temperature 0, sampled above); prompts go through the model's chat
    template when `chat`. Greedy decoding refills finished rows (models/generate.py) where the model
    allows it; `add_special_tokens` as lm-eval's HF backend (the tokenizer's BOS unless the prompt starts with it).
    Inside an evaluation task, answers recorded before an interruption are reused and each new one is
    recorded as it completes (io/answer_journal.py)."""
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    )
    tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the prompt
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not prompts:
        return []
    write_chat = CHAT_PROMPTS.get() if chat else None
    if write_chat is not None:
        prompts = write_chat(prompts, tokenizer)
    elif uses_chat_template(tokenizer, chat):
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    journal = journal_for(model)
    settings = [max_new_tokens, temperature, top_p, add_special_tokens]
    outputs: list[str | None] = [None] * len(prompts)
    slots: list[str] = []
    if journal is not None:  # answers given before an interruption (io/answer_journal.py)
        for i, prompt in enumerate(prompts):
            slot, found, answer = journal.ask(["generate", prompt, settings])
            slots.append(slot)
            if found:
                outputs[i] = answer
    todo = [i for i, answer in enumerate(outputs) if answer is None]

    def done(position: int, text: str) -> None:
        outputs[todo[position]] = text
        if journal is not None:
            journal.record(slots[todo[position]], text)

    if not todo:
        return outputs
    stop = set(stop_token_ids(model, tokenizer) or ())  # both decoding paths stop on any of them
    if temperature <= 0 and supports_slot_decoding(model):
        ids = [encode(tokenizer, prompts[i], add_special_tokens) for i in todo]
        answers = greedy_generate(
            model,
            ids,
            max_new_tokens,
            batch_size,
            stop,
            tokenizer.pad_token_id,
            progress,
            on_answer=lambda position, tokens: done(position, tokenizer.decode(tokens, skip_special_tokens=True)),
        )
        for position, tokens in enumerate(answers):  # none is reported when nothing is generated (0 new tokens)
            if outputs[todo[position]] is None:
                outputs[todo[position]] = tokenizer.decode(tokens, skip_special_tokens=True)
        return outputs
    # Batches of prompts of similar length: less left padding to run through every decoding step.
    # Answers go back in the caller's order.
    lengths = [len(ids) for ids in tokenizer([prompts[i] for i in todo], add_special_tokens=False).input_ids]
    order = sorted(range(len(todo)), key=lambda p: lengths[p])
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        encoded = tokenizer(
            [prompts[todo[p]] for p in index], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        generated = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(stop) or None,
            **sampling,
        )
        for p, text in zip(
            index, tokenizer.batch_decode(generated[:, encoded.input_ids.shape[1] :], skip_special_tokens=True)
        ):
            done(p, text)
    return outputs
