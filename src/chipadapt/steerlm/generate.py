"""Generation conditioned on attributes chosen by the user (SteerLM inference)."""

import torch

from chipadapt.data.base import pad_token_id
from chipadapt.data.chat_templates import attribute_string
from chipadapt.models.context_fit import fitted_prompt, model_context, reply_tokens, system_too_long
from chipadapt.models.text_generation import stop_token_ids


@torch.no_grad()
def generate_with_attributes(
    model,
    tokenizer,
    template,
    messages: list[dict],
    attributes: dict,
    order: list[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    streamer=None,
) -> str:
    prompt = template.prompt(messages, attribute_string(attributes, order))
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    pad = pad_token_id(tokenizer)
    stop = stop_token_ids(model, tokenizer)  # a ChipNeMo-format reply ends with the tokenizer's eos
    output = model.generate(
        **encoded, max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=stop, streamer=streamer, **sampling
    )
    return tokenizer.decode(output[0, encoded.input_ids.shape[1] :], skip_special_tokens=True)


def sample_with_attributes(
    model,
    tokenizer,
    template,
    prompts: list[list[dict]],
    settings: list[dict],
    order: list[str],
    samples_per_setting: int,
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
    journal=None,
) -> tuple[list[list[str]], dict[str, int]]:
    """For each prompt, `samples_per_setting` sampled replies under each attribute setting (in that
    order: setting-major), generated `batch_size` rows at a time with left padding; and the counts of
    prompts fitted to the model's context as chat.py fits its history (models/context_fit.py):
    `prompts_cut` (earlier turns left out), `prompts_too_long` (no room for a reply: no replies).
    With a `journal` (steerlm/progress_journal.py), replies it holds from an interrupted run are reused
    and each new one is appended as its batch completes."""
    context = model_context(model)

    def tokens(messages: list[dict]) -> int:  # the longest attribute string of the settings
        return max(
            len(tokenizer(template.prompt(messages, attribute_string(s, order)), add_special_tokens=False).input_ids)
            for s in settings
        )

    fitted = [fitted_prompt(messages, tokens, context, max_new_tokens) for messages in prompts]
    counts = {
        "prompts_cut": sum(1 for kept, left_out in fitted if kept is not None and left_out),
        "prompts_too_long": sum(1 for kept, _ in fitted if kept is None),
        # of those, the prompts whose system turn alone leaves no room: the system prompt is what to shorten
        "system_too_long": sum(
            1
            for (kept, _), messages in zip(fitted, prompts)
            if kept is None and system_too_long(messages, tokens, context, max_new_tokens)
        ),
    }
    jobs = [
        (pi, template.prompt(kept, attribute_string(setting, order)))
        for pi, (kept, _) in enumerate(fitted)
        if kept is not None
        for setting in settings
        for _ in range(samples_per_setting)
    ]
    replies: list[str | None] = [None] * len(jobs)
    slots = []
    if journal is not None:
        for j, (_, text) in enumerate(jobs):
            slot, found, reply = journal.ask(["sample", text, max_new_tokens, temperature])
            slots.append(slot)
            replies[j] = reply if found else None
    todo = [j for j, reply in enumerate(replies) if reply is None]
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    pad, stop = pad_token_id(tokenizer), stop_token_ids(model, tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens follow every prompt's end
    pad_token = tokenizer.pad_token
    if pad_token is None:  # Llama-2 and others ship none; padded positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            encoded = tokenizer(
                [jobs[j][1] for j in chunk], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            width = encoded.input_ids.shape[1]
            generated = model.generate(
                **encoded,
                max_new_tokens=reply_tokens(context, max_new_tokens, width),
                pad_token_id=pad,
                eos_token_id=stop,
                **sampling,
            )
            for j, row in zip(chunk, generated):
                replies[j] = tokenizer.decode(row[width:], skip_special_tokens=True)
                if journal is not None:
                    journal.record(slots[j], replies[j])
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad_token
    out = [[] for _ in prompts]
    for (pi, _), reply in zip(jobs, replies):
        out[pi].append(reply)
    return out, counts
