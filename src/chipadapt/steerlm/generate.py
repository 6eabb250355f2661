"""Generation conditioned on attributes chosen by the user (SteerLM inference)."""

import torch

from chipadapt.data.chat_templates import attribute_string


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
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output = model.generate(**encoded, max_new_tokens=max_new_tokens, pad_token_id=pad, streamer=streamer, **sampling)
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
    """For each prompt, `samples_per_setting` sampled replies under each attribute setting."""
    out = [[] for _ in prompts]
    for pi, messages in enumerate(prompts):
        for setting in settings:
            for _ in range(samples_per_setting):
                out[pi].append(
                    generate_with_attributes(
                        model, tokenizer, template, messages, setting, order, max_new_tokens, temperature
                    )
                )
    return out
