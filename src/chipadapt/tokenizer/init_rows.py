"""Embedding rows for the tokens the extension adds (`tokenizer.adapt.init.input|output`).

Each new token stands for a run of base pieces (its merge chain), so its rows are built from the
base model's rows, before any training:
- input `mean`: the mean of the pieces' input embeddings (ChipNeMo's rule);
- output `zero`: ChipNeMo's rule. Every new logit starts at 0, far below the logits of likely
  tokens, so text that now uses a new token is scored as near impossible until training has
  taught the row (about +1.6 bits/byte on the quickstart's domain text);
- output `mean`: the mean of the pieces' output rows (the input rule applied to the unembedding,
  as in Gee et al. 2022, "Fast Vocabulary Transfer"); its logit is the mean of the pieces' logits,
  so the new token is as likely as its pieces are on average;
- output `vocab_mean`: the mean of all output rows (Hewitt 2021, "Initializing new word embeddings
  for pretrained language models"; transformers' `mean_resizing`): by Jensen's inequality every
  new token takes at most the average token's share, which bounds what the base tokens lose
  (log(1 + new/vocab) nats per token) but gives the new tokens only that share.
A rule maps (base rows [vocab, dim], the base-piece ids of each new token) to the new rows.
"""

import torch

from chipadapt.errors import ChipadaptError


def piece_mean(rows: torch.Tensor, pieces: list[list[int]]) -> torch.Tensor:
    return torch.stack([rows[ids].mean(dim=0) for ids in pieces]) if pieces else rows[:0]


def zero(rows: torch.Tensor, pieces: list[list[int]]) -> torch.Tensor:
    return rows.new_zeros(len(pieces), rows.shape[1])


def vocab_mean(rows: torch.Tensor, pieces: list[list[int]]) -> torch.Tensor:
    return rows.mean(dim=0, keepdim=True).expand(len(pieces), -1).clone()


INPUT_RULES = {"mean": piece_mean}
OUTPUT_RULES = {"zero": zero, "mean": piece_mean, "vocab_mean": vocab_mean}


def rule(table: dict, name: str, side: str):
    if name not in table:
        raise ChipadaptError(f"tokenizer.adapt.init.{side}={name!r}: choose one of {', '.join(table)}")
    return table[name]
