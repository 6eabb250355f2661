"""Validation's sums per item: the negative log-likelihood, labelled tokens and bytes of text of each
held-out document (DAPT) or conversation (SFT), the items a split's interval resamples and the before
vs. after comparison pairs. A few floats per item, whatever the model.

A batch names its rows (`row_index`: the sequence's index in its validation set) and, for packed
documents, each token's document (`item_index`); without `item_index` a row is one item (a
conversation). Each batch gives one record per (row, item) it scored: [row, item, nll, tokens, bytes].
Records from every process are gathered and a (row, item) seen twice is kept once: under DDP,
DistributedSampler pads the last round with repeats of the first sequences, which would otherwise
count twice. Position t predicts token t+1, so a loss is the item of the token it predicts.
A tokenizer that prepends a space to a text (Llama-2's dummy prefix) has it taken off each packed
document's bytes (`without_added_space`), as evaluate.py's perplexity does, from the token ids alone."""

import numpy as np
import torch

# Columns of a split's item table (`item_table`).
ITEM, NLL, TOKENS, BYTES = range(4)
# Columns of a batch's records (`batch_records`): [row, item, nll, tokens, bytes].
RECORD_ROW, RECORD_ITEM, RECORD_BYTES = 0, 1, 4


def batch_records(
    batch: dict[str, torch.Tensor], token_nll: torch.Tensor, labels: torch.Tensor, token_bytes: torch.Tensor, dtype
) -> torch.Tensor:
    """(k, 5) records [row, item, nll, tokens, bytes] of one batch. `token_nll` and `labels` are the
    shifted (batch, length - 1) per-position loss and target (-100: no loss)."""
    rows = batch["row_index"].to(labels.device)
    if "item_index" in batch:
        items = batch["item_index"][:, 1:].to(labels.device)
    else:  # one item a row (a validation conversation)
        items = rows.unsqueeze(1).expand_as(labels)
    scored = labels != -100
    row_of = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[scored]
    item_of = items[scored]
    width = int(item_of.max()) + 1 if item_of.numel() else 1
    pairs, where = torch.unique(row_of * width + item_of, return_inverse=True)
    values = torch.stack(
        [token_nll[scored].to(dtype), torch.ones_like(item_of, dtype=dtype), token_bytes[labels[scored]].to(dtype)],
        dim=1,
    )
    sums = torch.zeros((len(pairs), 3), dtype=dtype, device=labels.device).index_add_(0, where, values)
    keys = torch.stack([rows[pairs // width], pairs % width], dim=1).to(dtype)
    return torch.cat([keys, sums], dim=1)


def document_starts(batch: dict[str, torch.Tensor], labels: torch.Tensor, token_bytes: torch.Tensor) -> torch.Tensor:
    """Which predicted tokens (positions of the shifted `labels`) begin a packed held-out document: where
    the document changes from the token before, and the stream's first token, which follows the start
    token (a special token, of no bytes) that data/packing.py numbers as the first document's."""
    items, inputs = batch["item_index"].to(labels.device), batch["input_ids"].to(labels.device)
    starts = items[:, 1:] != items[:, :-1]
    starts[:, 0] |= (batch["row_index"].to(labels.device) == 0) & (token_bytes[inputs[:, 0]] == 0)
    return starts & (labels != -100)


def without_added_space(
    records: torch.Tensor, batch: dict[str, torch.Tensor], labels: torch.Tensor, token_bytes: torch.Tensor, added: int
) -> torch.Tensor:
    """The batch's records with the prepended space (`added` bytes) taken off the bytes of each document
    whose first token the batch predicts: at most that token's bytes (a document of no text begins with its
    separator). The ids do not say whether the text itself started with a space, which the tokenizer then
    did not prepend (Metaspace's prepend_scheme first): such a document counts one byte short, where
    evaluate.py's perplexity, which has the text, takes off nothing."""
    starts = document_starts(batch, labels, token_bytes)
    if not starts.any():
        return records
    rows = batch["row_index"].to(labels.device).unsqueeze(1).expand_as(labels)[starts].to(records.dtype)
    items = batch["item_index"][:, 1:].to(labels.device)[starts].to(records.dtype)
    taken = token_bytes[labels[starts]].clamp(max=added).to(records.dtype)
    match = (records[:, None, RECORD_ROW] == rows) & (records[:, None, RECORD_ITEM] == items)
    records = records.clone()
    records[:, RECORD_BYTES] -= (match.to(records.dtype) * taken).sum(1)
    return records


def item_table(records: np.ndarray) -> np.ndarray:
    """(n, 4) [item, nll, tokens, bytes] per item, in item order, from the gathered records; a
    (row, item) record that more than one process scored (a padded repeat) is counted once."""
    records = np.asarray(records, dtype=np.float64).reshape(-1, 5)
    _, first = np.unique(records[:, :2], axis=0, return_index=True)
    records = records[np.sort(first)]
    items, where = np.unique(records[:, 1], return_inverse=True)
    table = np.zeros((len(items), 4))
    table[:, ITEM] = items
    for column, source in ((NLL, 2), (TOKENS, 3), (BYTES, 4)):
        table[:, column] = np.bincount(where, weights=records[:, source], minlength=len(items))
    return table
