"""Generation conditioned on attributes chosen by the user (SteerLM inference)."""

import torch

from chipadapt.data.base import pad_token_id
from chipadapt.data.chat_templates import attribute_string
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
) -> list[list[str]]:
    """For each prompt, `samples_per_setting` sampled replies under each attribute setting (in that
    order: setting-major), generated `batch_size` rows at a time with left padding."""
    jobs = [
        (pi, template.prompt(messages, attribute_string(setting, order)))
        for pi, messages in enumerate(prompts)
        for setting in settings
        for _ in range(samples_per_setting)
    ]
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    pad, stop = pad_token_id(tokenizer), stop_token_ids(model, tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens follow every prompt's end
    pad_token = tokenizer.pad_token
    if pad_token is None:  # Llama-2 and others ship none; padded positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    out = [[] for _ in prompts]
    try:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            encoded = tokenizer(
                [text for _, text in chunk], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            generated = model.generate(
                **encoded, max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=stop, **sampling
            )
            width = encoded.input_ids.shape[1]
            for (pi, _), row in zip(chunk, generated):
                out[pi].append(tokenizer.decode(row[width:], skip_special_tokens=True))
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad_token
    return out
