"""Shared model plumbing for tasks: log-likelihood of continuations and batched greedy generation."""

import torch


@torch.no_grad()
def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int, max_length: int) -> list[float]:
    """Sum of log-probabilities of each continuation given its context (lm-eval's loglikelihood)."""
    scores = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        rows, spans = [], []
        for context, continuation in batch:
            ctx = tokenizer(context, add_special_tokens=False).input_ids
            cont = tokenizer(continuation, add_special_tokens=False).input_ids
            ids = (ctx + cont)[-max_length:]
            rows.append(ids)
            spans.append(len(cont))
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
        logprobs = model(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)).logits.float().log_softmax(-1)
        for i, (ids, n) in enumerate(zip(rows, spans)):
            positions = torch.arange(len(ids) - n - 1, len(ids) - 1)
            targets = torch.tensor(ids[len(ids) - n :])
            scores.append(float(logprobs[i, positions, targets].sum()))
    return scores


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int, chat: bool,
             temperature: float = 0.0, top_p: float = 1.0) -> list[str]:
    """Completions (greedy at temperature 0, sampled above); prompts go through the model's chat
    template when `chat`."""
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the prompt
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not prompts:
        return []
    if chat and tokenizer.chat_template:
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in prompts]
    # Batches of prompts of similar length: less left padding to run through every decoding step.
    # Answers go back in the caller's order.
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False).input_ids]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    outputs: list[str | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        encoded = tokenizer([prompts[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        generated = model.generate(**encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling)
        for i, text in zip(index, tokenizer.batch_decode(generated[:, encoded.input_ids.shape[1] :], skip_special_tokens=True)):
            outputs[i] = text
    return outputs
