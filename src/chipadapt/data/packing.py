"""Packing documents into fixed-length sequences separated by a document separator token.

Documents are laid end to end (each followed by the separator) and cut into `seq_len` windows,
so no position is padding; in training the tail shorter than one window is dropped, in validation it
is kept (the text scored is then the same at every seq_len). Items are built on the fly from the
memory-mapped token cache, so a sweep shares one copy of the data on disk.

A validation set (`with_items`) also says which sequence each row is (`row_index`, the dataset index)
and which document each token belongs to (`item_index`, the document's place in `order`; a document's
separator is its own last token): validation sums each held-out document's loss, tokens and bytes, the
items its interval resamples (modules/val_items.py).

Validation also predicts every token of its text (`start_token`): the stream begins with the token a
document begins after (the separator, as every later document does), and each row begins with the last
token of the row before, the context its first prediction is made from. Rows cut at seq_len - 1 new
tokens: the first token of each row, which nothing in the row predicts, was left unscored (its bytes out
of the figure, other bytes with another tokenizer or seq_len, so two runs' documents differed by them).
"""

import numpy as np
import torch
from torch.utils.data import Dataset

from chipadapt.data.token_cache import TokenizedSource


class PackedSequences(Dataset):
    def __init__(
        self,
        sources: list[TokenizedSource],
        order: np.ndarray,
        seq_len: int,
        separator_id: int,
        shuffle_seed: int | None = None,
        keep_tail: bool = False,
        last_tokens: int | None = None,
        with_items: bool = False,
        start_token: int | None = None,
    ):
        """order: rows of (source index, document index). keep_tail keeps the short last window
        (validation scores all its text; training never pads). last_tokens: the last document is cut to
        this many tokens, with no separator after it (it did not end there). with_items: each row also
        carries its index and its tokens' documents (validation). start_token: the stream's first token
        is predicted after it, and rows overlap by one token (validation: module docstring); it implies
        keep_tail."""
        if start_token is not None and seq_len < 2:
            raise ValueError("a row that predicts every token needs seq_len >= 2 (one token of context)")
        self.sources = sources
        self.start_token = start_token
        # Rows overlap by the one token of context that starts each (validation predicting every token).
        self.lead = int(start_token is not None)
        self.stride = seq_len - self.lead
        self.with_items = with_items
        self.order = order
        self.seq_len = seq_len
        self.separator_id = separator_id
        self.last_tokens = last_tokens
        lengths = np.array([sources[s].doc_length(d) + 1 for s, d in order], dtype=np.int64)
        if last_tokens is not None and len(lengths):
            lengths[-1] = last_tokens
        self.ends = np.cumsum(lengths)
        self.total_tokens = int(self.ends[-1]) if len(self.ends) else 0
        count = self.total_tokens // self.stride
        self.partial_tail = (keep_tail or self.lead > 0) and self.total_tokens % self.stride > 0
        count += int(self.partial_tail)
        index = np.arange(count)
        if shuffle_seed is not None:
            index = np.random.default_rng(shuffle_seed).permutation(count)
        self.index = index

    @property
    def packing_efficiency(self) -> float:
        """Share of the stream's tokens that land in a sequence (the rest is the dropped tail)."""
        used = min(len(self.index) * self.seq_len, self.total_tokens)
        return used / self.total_tokens if self.total_tokens else 0.0

    def __len__(self) -> int:
        return len(self.index)

    def _row(self, k: int) -> tuple[np.ndarray, bool]:
        """Row k's tokens in the stream, and whether a separator follows them."""
        src, doc = self.order[k]
        tokens = self.sources[src].doc_tokens(doc)
        if self.last_tokens is not None and k == len(self.order) - 1:
            return tokens[: self.last_tokens], False
        return tokens, True

    def window(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.total_tokens)
        out = np.empty(stop - start, dtype=np.int64)
        k = int(np.searchsorted(self.ends, start, side="right"))
        pos, filled = start, 0
        while pos < stop:
            tokens, separated = self._row(k)
            row_start = int(self.ends[k]) - len(tokens) - int(separated)
            lo = pos - row_start
            hi = min(stop - row_start, len(tokens) + int(separated))
            take = tokens[lo : min(hi, len(tokens))]
            out[filled : filled + len(take)] = take
            filled += len(take)
            if separated and hi == len(tokens) + 1:  # the window includes this document's separator
                out[filled] = self.separator_id
                filled += 1
            pos = row_start + hi
            k += 1
        return out

    def documents_of(self, start: int, stop: int) -> np.ndarray:
        """For each token of the stream's window [start, stop), the index in `order` of its document."""
        return np.searchsorted(self.ends, np.arange(start, min(stop, self.total_tokens)), side="right")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        # The row's new tokens start at `start`; with a lead, the token before them comes first.
        start = int(self.index[i]) * self.stride
        stop = start + self.stride
        first = max(start - self.lead, 0)
        tokens = self.window(first, stop)
        documents = self.documents_of(first, stop) if self.with_items else None
        if self.lead and start == 0:  # the stream's first row: its context is the start token
            tokens = np.concatenate([[self.start_token], tokens])
            if documents is not None:  # never a target: any document does (the first one's)
                documents = np.concatenate([[0], documents])
        item = {"input_ids": torch.from_numpy(tokens.astype(np.int64))}
        if documents is not None:
            item["row_index"] = torch.tensor(i)
            item["item_index"] = torch.from_numpy(np.asarray(documents, dtype=np.int64))
        return item


def collate_causal_lm(batch: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Stack packed sequences; pad (label -100, attention 0, item -1) only a short validation tail."""
    longest = max(item["input_ids"].numel() for item in batch)
    input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), longest), dtype=torch.long)
    items = "item_index" in batch[0]
    item_index = torch.full((len(batch), longest), -1, dtype=torch.long) if items else None
    for row, item in enumerate(batch):
        n = item["input_ids"].numel()
        input_ids[row, :n] = item["input_ids"]
        attention[row, :n] = 1
        if items:
            item_index[row, :n] = item["item_index"]
    labels = input_ids.masked_fill(attention == 0, -100)
    out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if items:
        out["row_index"] = torch.stack([item["row_index"] for item in batch])
        out["item_index"] = item_index
    return out
