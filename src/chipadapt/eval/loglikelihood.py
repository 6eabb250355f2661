"""Log-likelihood of continuations given contexts: lm-evaluation-harness's numbers, computed with less work.

Tokenisation follows lm-eval 0.4.13's HF backend exactly (so both score the same tokens): trailing
whitespace of the context moves to the continuation, the continuation's tokens are those of
`context + continuation` after the context's own tokens, an empty context becomes the BOS (else EOS)
token, and a pair longer than `max_length + 1` tokens loses its oldest context tokens.

Work saved, with the same result:
- every continuation of one context (the choices of a question) shares one pass over the context:
  the choices follow the context in the same row, each seeing the context and itself only (a
  block mask, positions restarting after the context);
- several such groups are packed into one row of about `ROW_TOKENS` tokens (block-diagonal mask),
  and rows are filled in length order, so there is almost no padding;
- the vocabulary projection and log-softmax run only at the positions that predict a continuation
  token, not at every position of the row (a 49k-word vocabulary costs as much as a few layers).
"""

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from chipadapt.errors import ChipadaptError
from chipadapt.io.answer_journal import journal_for
from chipadapt.models.text_generation import encode

# Longer rows waste quadratic attention work under the block mask (it is computed dense); shorter
# rows give the matrix multiplications too few rows to run at full speed on a CPU.
ROW_TOKENS = 512


def encode_pair(tokenizer, context: str, continuation: str, add_special_tokens: bool) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-eval's HF backend splits them."""
    if not context:
        cont = tokenizer.encode(continuation, add_special_tokens=False)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode(tokenizer, context + continuation, add_special_tokens)
    ctx = encode(tokenizer, context, add_special_tokens)
    return ctx, whole[len(ctx) :]


@dataclass
class Group:
    """One context and the continuations scored after it (request index, continuation tokens)."""

    context: tuple[int, ...]
    continuations: list[tuple[int, list[int]]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        # The last token of each continuation is only a target, never an input.
        return len(self.context) + sum(len(c) - 1 for _, c in self.continuations)


def group_requests(encoded: list[tuple[list[int], list[int]]], max_length: int, indices: list[int]) -> list[Group]:
    """The requests `indices` of `encoded`, grouped by their (cut) context."""
    groups: dict[tuple[int, ...], Group] = {}
    for index in indices:
        ctx, cont = encoded[index]
        if not cont:
            raise ChipadaptError(f"log-likelihood request {index}: the continuation has no tokens")
        if len(cont) > max_length:
            raise ChipadaptError(
                f"log-likelihood request {index}: a {len(cont)}-token continuation does not fit max_length={max_length}"
            )
        context = tuple(ctx[-(max_length + 1 - len(cont)) :])  # lm-eval keeps the last max_length + 1 tokens
        groups.setdefault(context, Group(context)).continuations.append((index, cont))
    return list(groups.values())


def pack_rows(groups: list[Group], row_tokens: int) -> list[list[Group]]:
    """Groups, longest first, into rows of at most `row_tokens` tokens (a longer group gets its own row)."""
    rows: list[list[Group]] = []
    sizes: list[int] = []
    for group in sorted(groups, key=lambda g: -g.tokens):
        # First fit among the last few open rows: lengths only shrink, so older rows are full.
        for r in range(max(0, len(rows) - 8), len(rows)):
            if sizes[r] + group.tokens <= row_tokens:
                rows[r].append(group)
                sizes[r] += group.tokens
                break
        else:
            rows.append([group])
            sizes.append(group.tokens)
    return rows


def layout_row(groups: list[Group]):
    """Token ids, positions, the allowed-attention blocks and the scored (position, target, request) of one row."""
    ids, positions, blocks, targets = [], [], [], []
    for group in groups:
        start = len(ids)
        ids += group.context
        positions += range(len(group.context))
        blocks.append((start, len(ids), start, start))  # the context sees itself causally
        last_context = len(ids) - 1
        for request, cont in group.continuations:
            segment = len(ids)
            ids += cont[:-1]
            positions += range(len(group.context), len(group.context) + len(cont) - 1)
            blocks.append((segment, len(ids), start, last_context + 1))  # a continuation sees its context and itself
            reads = [last_context, *range(segment, segment + len(cont) - 1)]
            targets += [(p, t, request) for p, t in zip(reads, cont)]
    return ids, positions, blocks, targets


@torch.no_grad()
def score_batch(model, rows: list[list[Group]], pad_id: int) -> list[tuple[int, float]]:
    laid = [layout_row(row) for row in rows]
    # Widths rounded up to a multiple of 64: few distinct shapes, so the CPU kernels chosen for one are reused.
    width = -(-max(len(ids) for ids, *_ in laid) // 64) * 64
    n = len(laid)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((n, width), dtype=torch.long)
    allowed = torch.zeros((n, 1, width, width), dtype=torch.bool)
    keep = torch.zeros((n, width), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    for r, (ids, positions, blocks, targets) in enumerate(laid):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        position_ids[r, : len(ids)] = torch.tensor(positions)
        for begin, end, context_start, context_end in blocks:
            allowed[r, 0, begin:end, context_start:context_end] = True
            allowed[r, 0, begin:end, begin:end] = causal[: end - begin, : end - begin]
        allowed[r, 0, range(len(ids), width), range(len(ids), width)] = True  # padding sees itself: no empty rows
        keep[r, sorted({p for p, _, _ in targets})] = True
    if model.config._attn_implementation != "sdpa":  # eager attention adds the mask to the scores
        mask = torch.zeros(allowed.shape, dtype=model.dtype).masked_fill(~allowed, torch.finfo(model.dtype).min)
    else:
        mask = allowed
    device = model.device
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=position_ids.to(device),
        logits_to_keep=keep.to(device),
        use_cache=False,
    ).logits
    logprobs = logits.float().log_softmax(-1).cpu()  # (kept positions, vocabulary), rows in order
    out = []
    offset = 0
    for _, _, _, targets in laid:
        kept = sorted({p for p, _, _ in targets})
        where = {p: offset + i for i, p in enumerate(kept)}
        out += [(request, float(logprobs[where[p], t])) for p, t, request in targets]
        offset += len(kept)
    return out


def loglikelihoods(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    rows_per_batch: int,
    max_length: int,
    add_special_tokens: bool = False,
    progress: str | None = None,
) -> list[float]:
    """Sum of log-probabilities of each continuation given its context, in the order of `pairs`.

    `add_special_tokens` as lm-eval's HF backend (True: the tokenizer's own BOS, when it adds one)."""
    encoded = [encode_pair(tokenizer, c, x, add_special_tokens) for c, x in pairs]
    sums = [0.0] * len(pairs)
    journal = journal_for(model)
    todo, slots = list(range(len(pairs))), []
    if journal is not None:  # answers given before an interruption (io/answer_journal.py)
        todo = []
        for i, (ctx, cont) in enumerate(encoded):
            slot, found, value = journal.ask(["loglikelihood", ctx, cont, max_length])
            slots.append(slot)
            if found:
                sums[i] = value
            else:
                todo.append(i)
    rows = pack_rows(group_requests(encoded, max_length, todo), ROW_TOKENS)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Counted in contexts: for multiple choice, one per question.
    # disable=None: no bar where stderr is no terminal (a log file), as the tasks' own bars (task_base.item_bar).
    bar = tqdm(
        total=sum(len(row) for row in rows),
        desc=progress,
        unit="item",
        disable=True if progress is None else None,
        mininterval=2,
    )
    for start in range(0, len(rows), max(1, rows_per_batch)):
        batch = rows[start : start + rows_per_batch]
        for request, logprob in score_batch(model, batch, pad):
            sums[request] += logprob
        if journal is not None:  # a group's continuations all sit in one row: each is complete now
            for group in (group for row in batch for group in row):
                for request, _ in group.continuations:
                    journal.record(slots[request], sums[request])
        bar.update(sum(len(row) for row in batch))
    bar.close()
    return sums
