"""Batched greedy decoding over a preallocated KV cache whose rows are refilled as answers finish.

Hugging Face's `generate` runs a batch until its longest answer ends: on IFEval a few answers run to
the token limit while most stop early, so most of the batch decodes padding. Here a finished row is
handed the next prompt (its prompt is run once and its keys and values copied into the free row),
so the batch stays full until the prompts run out; then finished rows are dropped. The cache is
allocated once (no copy of the whole cache per token, as a growing cache does) and each step
attends only to the columns some live row still uses.

Rows share the write column: a row whose prompt is shorter starts further right, and the attention
mask and per-row positions make that invisible to the model, so an answer does not depend on its
batch neighbours beyond float rounding. Works for decoder-only models whose attention takes a
custom 4D mask and writes through `past_key_values.update` (Llama, Mistral, Qwen, ... families);
`supports_slot_decoding` says when, and callers fall back to `model.generate` otherwise.
"""

from collections.abc import Callable

import torch
from tqdm.auto import tqdm
from transformers.cache_utils import Cache, DynamicCache

# Prompts prefilled together: enough rows for full-speed matrix multiplications, few enough that
# prompts of one group have similar lengths.
PREFILL_ROWS = 16


def supports_slot_decoding(model) -> bool:
    config = model.config
    # A sliding window or per-layer attention kinds need their own masks; a custom 4D mask would drop them.
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    windowed = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
    return (
        kinds == {"full_attention"}
        and not windowed
        and not getattr(config, "is_encoder_decoder", False)
        and config._attn_implementation in ("sdpa", "eager")
    )


class SlotCache(Cache):
    """Keys and values of `rows` sequences in fixed tensors; every row writes its next token at column `end`."""

    def __init__(self, layers: int, rows: int, kv_heads: int, head_dim: int, capacity: int, dtype, device):
        super().__init__(layers=[])
        shape = (rows, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.rows, self.low, self.end = rows, 0, 0

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        n = key_states.shape[2]
        self.keys[layer_idx][: self.rows, :, self.end : self.end + n] = key_states
        self.values[layer_idx][: self.rows, :, self.end : self.end + n] = value_states
        return (
            self.keys[layer_idx][: self.rows, :, self.low : self.end + n],
            self.values[layer_idx][: self.rows, :, self.low : self.end + n],
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.end

    def move_rows(self, source: torch.Tensor, target: torch.Tensor) -> None:
        for tensors in (self.keys, self.values):
            for t in tensors:
                t[target] = t[source]

    def shift(self, by: int) -> None:
        """Move every column `by` to the left (negative: to the right)."""
        for tensors in (self.keys, self.values):
            for t in tensors:
                if by > 0:
                    t[:, :, : self.end - by] = t[:, :, by : self.end].clone()
                else:
                    t[:, :, -by : self.end - by] = t[:, :, : self.end].clone()
        self.end -= by
        self.low -= by


@torch.no_grad()
def greedy_generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    stop_ids: set[int],
    pad_id: int,
    progress: str | None = None,
    on_answer: Callable[[int, list[int]], None] | None = None,
) -> list[list[int]]:
    """Greedy continuation token ids of each prompt (without the stop token), in the order of `prompts`;
    `on_answer(prompt index, ids)` as each one completes (rows finish in any order).

    On a CPU a decoding step reads every weight once whatever the batch, so wide batches (64-128 rows)
    share that read; the matrix multiplications are then about half of a step, the rest being the
    per-layer small operations and attention over the cache (experiments/LOG.md, issue 24 speed).
    transformers' own SDPA path for one query token runs the grouped query heads against the shared
    key/value heads without copying them (`pack_gqa`): forcing SDPA's `enable_gqa` instead measured no
    faster in a whole step, and slower in attention alone."""
    outputs: list[list[int]] = [[] for _ in prompts]
    if not prompts or max_new_tokens <= 0:
        return outputs
    device, config = model.device, model.config
    # Longest prompts first: every later prompt fits left of the write column when it joins.
    queue = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    rows = min(batch_size, len(prompts))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    longest = len(prompts[queue[0]])
    # Room for the longest answer after the longest prompt, plus slack so that the cache is rarely shifted.
    capacity = longest + max_new_tokens + max(64, max_new_tokens // 4)
    cache = SlotCache(config.num_hidden_layers, rows, kv_heads, head_dim, capacity, model.dtype, device)
    valid = torch.zeros((rows, capacity), dtype=torch.bool, device=device)
    position = torch.zeros(rows, dtype=torch.long, device=device)  # next position of each row
    owner = [-1] * rows  # prompt index in each row, -1 = free
    start = [0] * rows  # first column of each row
    next_token = torch.zeros(rows, dtype=torch.long, device=device)
    bar = tqdm(total=len(prompts), desc=progress, unit="item", disable=progress is None, mininterval=2)
    generated = [0]  # tokens kept, for the progress bar

    def accept(slot: int, token: int) -> None:
        """Keep the token just chosen for a row, or end the row (stop token, or the answer is full)."""
        i = owner[slot]
        if token not in stop_ids:
            outputs[i].append(token)
            generated[0] += 1
        if token in stop_ids or len(outputs[i]) >= max_new_tokens:
            owner[slot] = -1
            if on_answer is not None:
                on_answer(i, outputs[i])
            bar.update(1)
            bar.set_postfix_str(f"{generated[0] / max(bar.format_dict['elapsed'], 1e-9):.0f} tok/s", refresh=False)

    def shift(by: int) -> None:
        cache.shift(by)
        valid.copy_(valid.roll(-by, dims=1))
        if by > 0:
            valid[:, capacity - by :] = False
        else:
            valid[:, :-by] = False
        for s in range(cache.rows):
            start[s] -= by

    def fill(free: list[int]) -> None:
        """Prefill the next prompts into the free rows; their first token comes from the prefill logits."""
        take = [queue.pop(0) for _ in free[: len(queue)]]
        if not take:
            return
        width = max(len(prompts[i]) for i in take)
        if cache.end < width:  # the first fill, or after a shift: make room left of the write column
            shift(cache.end - width)
        # The queue is longest first, so consecutive prompts have similar lengths: prefilled in groups, each
        # is padded to its own longest prompt only (one group of 64 IFEval prompts was 38% padding tokens).
        slots = iter(free)
        for group in range(0, len(take), PREFILL_ROWS):
            prefill([(next(slots), i) for i in take[group : group + PREFILL_ROWS]])

    def prefill(pairs: list[tuple[int, int]]) -> None:
        width = max(len(prompts[i]) for _, i in pairs)
        ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for r, (_, i) in enumerate(pairs):
            ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        fresh = DynamicCache(config=config)
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            past_key_values=fresh,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        first = logits.argmax(-1)
        for r, (slot, i) in enumerate(pairs):
            for layer in range(config.num_hidden_layers):
                cache.keys[layer][slot, :, cache.end - width : cache.end] = fresh.layers[layer].keys[r]
                cache.values[layer][slot, :, cache.end - width : cache.end] = fresh.layers[layer].values[r]
            valid[slot] = False
            valid[slot, cache.end - width : cache.end] = mask[r].bool().to(device)
            owner[slot], start[slot] = i, cache.end - len(prompts[i])
            position[slot] = len(prompts[i])
            next_token[slot] = first[r]
            accept(slot, int(first[r]))

    fill(list(range(rows)))
    while True:
        free = [s for s in range(cache.rows) if owner[s] < 0]
        while free and queue:  # a refilled row may end at once (a stop token first): fill again
            fill(free)
            free = [s for s in range(cache.rows) if owner[s] < 0]
        live = [s for s in range(cache.rows) if owner[s] >= 0]
        if not live:
            break
        if free and (len(free) * 4 >= cache.rows or len(live) == 1):  # no prompt left: fewer rows to compute
            source = torch.tensor(live, device=device)
            target = torch.arange(len(live), device=device)
            cache.move_rows(source, target)
            valid[target] = valid[source]
            position[target] = position[source]
            next_token[target] = next_token[source]
            owner[: len(live)] = [owner[s] for s in live]
            start[: len(live)] = [start[s] for s in live]
            cache.rows = len(live)
        n = cache.rows
        live = [s for s in range(n) if owner[s] >= 0]
        cache.low = min(start[s] for s in live)
        if cache.end + 1 > capacity:  # out of columns: drop the ones no live row uses
            shift(cache.low)
        valid[:n, cache.end] = torch.tensor([owner[s] >= 0 for s in range(n)], device=device)
        mask = valid[:n, cache.low : cache.end + 1].clone()
        mask[:, -1] = True  # a free row still needs one visible column (no empty softmax)
        if model.config._attn_implementation == "sdpa":
            attention = mask[:, None, None, :]
        else:
            attention = torch.zeros((n, 1, 1, mask.shape[1]), dtype=model.dtype, device=device).masked_fill(
                ~mask[:, None, None, :], torch.finfo(model.dtype).min
            )
        logits = model(
            input_ids=next_token[:n, None],
            position_ids=position[:n, None],
            attention_mask=attention,
            past_key_values=cache,
            use_cache=True,
        ).logits[:, -1]
        cache.end += 1
        position[:n] += 1
        next_token[:n] = logits.argmax(-1)
        for slot, token in enumerate(next_token[:n].tolist()):
            if owner[slot] >= 0:
                accept(slot, token)
    bar.close()
    return outputs
