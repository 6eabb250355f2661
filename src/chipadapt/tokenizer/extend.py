"""Teach the base tokenizer the new tokens as BPE merges, and resize the model to match.

Why merges and not added tokens: added tokens are matched as raw strings before pre-tokenization,
anywhere in the text (inside other words, across the boundaries the model was trained with), so
they change how general text is split. Merges appended after the base merges have the lowest
priority: on every word the base segmentation is computed first, unchanged, and a new merge can
only join pieces of that result. So general text can only get shorter, never differently split
before the last step; decoding is still byte-exact; special tokens and the chat template are
untouched. A new token is used where a domain word has the pieces it joins, unless a merge of
another chain, ranked earlier, takes one of them first: produced.py keeps only tokens that the
extended tokenizer really produces.
"""

import json
import math

import torch
from tokenizers import Tokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.tokenizer.init_rows import INPUT_RULES, OUTPUT_RULES, rule
from chipadapt.tokenizer.select_tokens import Candidate
from chipadapt.tokenizer.words import segment

PAD_MULTIPLE = 64


class MergeExtension:
    """The base tokenizer.json parsed once, then extended by any list of chosen candidates: produced.py
    extends it every round, and re-reading a 262k-entry base (Gemma) each time cost a second a round."""

    def __init__(self, base_json: str):
        self.spec = json.loads(base_json)
        model = self.spec["model"]
        if model.get("type") != "BPE":
            raise ChipadaptError(f"tokenizer: only BPE tokenizers can be extended (this one is {model.get('type')})")
        merges = model["merges"]
        self.as_pairs = bool(merges) and isinstance(merges[0], list)
        self.known = frozenset(tuple(m) if self.as_pairs else tuple(m.split(" ", 1)) for m in merges)
        self.first_new_id = max([*model["vocab"].values(), *(t["id"] for t in self.spec.get("added_tokens", []))]) + 1

    def extend(self, chosen: list[Candidate]) -> tuple[str, list[str]]:
        """The base tokenizer.json with new vocabulary entries and merge chains appended (the base is
        left as it was: each call starts from it)."""
        model = self.spec["model"]
        vocab: dict[str, int] = dict(model["vocab"])
        merges = list(model["merges"])
        known = set(self.known)
        next_id = self.first_new_id
        new_tokens: list[str] = []
        for cand in chosen:
            acc = cand.pieces[0]
            for piece in cand.pieces[1:]:
                if (acc, piece) not in known:
                    known.add((acc, piece))
                    merges.append([acc, piece] if self.as_pairs else f"{acc} {piece}")
                acc += piece
                if acc not in vocab:
                    vocab[acc] = next_id
                    next_id += 1
                    new_tokens.append(acc)
        spec = {**self.spec, "model": {**model, "vocab": vocab, "merges": merges}}
        return json.dumps(spec, ensure_ascii=False), new_tokens


def extended_tokenizer_json(base_json: str, chosen: list[Candidate]) -> tuple[str, list[str]]:
    """The base tokenizer.json with new vocabulary entries and merge chains appended."""
    return MergeExtension(base_json).extend(chosen)


def padded_size(size: int, multiple: int = PAD_MULTIPLE) -> int:
    return int(math.ceil(size / multiple) * multiple)


def piece_ids(base_backend: Tokenizer, new_tokens: list[str]) -> list[list[int]]:
    """Base-vocabulary ids of each new token's base segmentation (what its rows are built from)."""
    return [[base_backend.token_to_id(piece) for piece in segment(base_backend, token)] for token in new_tokens]


@torch.no_grad()
def resize_for_new_tokens(
    model, pieces: list[list[int]], new_ids: list[int], total_rows: int, *, input_rule: str, output_rule: str
) -> dict:
    """Grow embeddings to total_rows, new rows by the init rules (init_rows.py). A tied model is
    untied first so the two rules can differ."""
    make_input = rule(INPUT_RULES, input_rule, "input")
    # Look the output rule up now too (set_output_rows applies it at the end) so a bad name fails
    # before the model is touched (untied, resized), not halfway through.
    rule(OUTPUT_RULES, output_rule, "output")
    embed = model.get_input_embeddings()
    old_rows = embed.weight.shape[0]
    if total_rows < old_rows:
        raise ChipadaptError(
            f"tokenizer: the extended vocabulary ({total_rows}) is smaller than the model's ({old_rows})"
        )
    was_tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if was_tied:
        # Give lm_head its own copy before resizing, then stop transformers from re-tying them.
        model.lm_head.weight = torch.nn.Parameter(embed.weight.detach().clone())
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False
    old_in = embed.weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()

    # The modules keep their class and grow their weights in place: some embeddings do more than look
    # rows up (Gemma's scales them by sqrt(hidden size)), which a plain nn.Embedding would drop.
    grown = old_in.new_empty(total_rows, old_in.shape[1])
    grown[:old_rows] = old_in
    grown[old_rows:] = old_in.mean(dim=0)  # padding rows, never produced by the tokenizer
    grown[new_ids] = make_input(old_in, pieces).to(grown.dtype)
    embed.weight = torch.nn.Parameter(grown, requires_grad=embed.weight.requires_grad)
    embed.num_embeddings = total_rows

    head = model.get_output_embeddings()
    grown = old_out.new_zeros(total_rows, old_out.shape[1])
    grown[:old_rows] = old_out
    head.weight = torch.nn.Parameter(grown, requires_grad=head.weight.requires_grad)
    if getattr(head, "bias", None) is not None:
        bias = head.bias.detach()
        grown_bias = bias.new_full((total_rows,), float(bias.min()))  # padding rows stay unlikely
        grown_bias[:old_rows] = bias
        grown_bias[new_ids] = torch.stack([bias[ids].mean() for ids in pieces]) if pieces else bias[:0]
        head.bias = torch.nn.Parameter(grown_bias, requires_grad=head.bias.requires_grad)
    if hasattr(head, "out_features"):
        head.out_features = total_rows
    set_output_rows(model, pieces, new_ids, old_rows, output_rule)
    model.config.vocab_size = total_rows
    return {
        "untied_embeddings": was_tied,
        "old_rows": old_rows,
        "new_rows": total_rows,
        "init": {"input": input_rule, "output": output_rule},
    }


@torch.no_grad()
def set_output_rows(model, pieces: list[list[int]], new_ids: list[int], old_rows: int, output_rule: str) -> None:
    """(Re)build the new tokens' output rows from the base rows [0, old_rows) by `output_rule`."""
    weight = model.get_output_embeddings().weight
    weight[new_ids] = rule(OUTPUT_RULES, output_rule, "output")(weight[:old_rows], pieces).to(weight.dtype)
