"""SFT / SteerLM data: a weighted blend of conversation sources, loss on assistant tokens only.

`data.packing=true` packs several conversations into each `seq_len` row with position ids restarting
per conversation and a block-diagonal attention mask (no attention across conversations);
`packing=false` pads each batch to its longest conversation. The waste of both is measured on the
training set and reported in the run's manifest either way.
"""

import logging
import random
from collections.abc import Sequence

import torch
from hydra.utils import instantiate
from jinja2.exceptions import TemplateError
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from chipadapt.data.base import TrainingDataModule, pad_token_id
from chipadapt.data.blend import copies
from chipadapt.data.chat_templates import attribute_string, tokenize_with_labels
from chipadapt.data.conversations import Conversation, load_conversations
from chipadapt.data.holdout import held_out
from chipadapt.data.sft_batches import collate_packed, collate_padded, pack_first_fit, packing_waste, padding_waste
from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)


def _plain(spec):
    """A source entry as plain data; a scalar where a source belongs is reported by the reader."""
    return OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec


class IndexedConversations(Sequence):
    """A validation split's encoded conversations, each read with its index (`row_index` in a batch)."""

    def __init__(self, samples: list[tuple[list[int], list[int]]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, tuple[list[int], list[int]]]:
        return i, self.samples[i]


class SFTDataModule(TrainingDataModule):
    def __init__(self, data: DictConfig, tokenizer, separator_token: str, token_cache_dir: str | None, seed: int):
        super().__init__(data.micro_batch_size, data.num_workers, seed)
        if token_cache_dir is not None:
            raise ChipadaptError(
                "stage.datamodule.token_cache_dir: conversations are tokenized in memory, not cached; leave it null"
            )
        self.cfg, self.tokenizer = data, tokenizer
        self.template = instantiate(data.template)(tokenizer=tokenizer)
        self.pad_id = pad_token_id(tokenizer, tokenizer.convert_tokens_to_ids(separator_token))

    def encode(self, conversation: Conversation) -> tuple[list[int], list[int]] | None:
        attrs = (
            attribute_string(conversation.attributes, list(self.cfg.attributes.order))
            if self.cfg.attributes.use
            else ""
        )
        try:
            rendered = self.template.render(conversation.messages, attrs)
        except (TemplateError, ValueError) as err:  # e.g. a template that insists on user/assistant turns
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ChipadaptError(
                f"{conversation.where}: the chat template cannot render this conversation: {first}"
            ) from None
        ids, labels = tokenize_with_labels(self.tokenizer, rendered, self.cfg.seq_len)
        return (ids, labels) if any(label != -100 for label in labels) else None  # truncated past every answer

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        if self.stats:
            return
        rng = random.Random(self.seed)
        train, val, rows = [], {}, []
        for name, spec in self.cfg.sources.items():
            if spec is None:  # a source switched off (data.sources.NAME=null)
                continue
            loaded = load_conversations(name, _plain(spec), f"data.sources.{name}")
            convs = loaded.conversations
            val_convs = [c for c in convs if held_out(c.id, self.cfg.val_fraction)] if self.cfg.val_fraction else []
            train_convs = [c for c in convs if not (self.cfg.val_fraction and held_out(c.id, self.cfg.val_fraction))]
            encoded = [e for e in map(self.encode, train_convs) if e]
            times = loaded.source.weight * loaded.source.epochs
            whole, extra = copies(times, len(encoded))
            blended = encoded * whole + rng.sample(encoded, extra)
            train += blended
            if val_convs:
                val[name] = [e for e in map(self.encode, val_convs[: self.cfg.val_max_conversations]) if e]
            rows.append(
                (
                    name,
                    len(convs),
                    loaded.no_answer,  # records with no assistant turn (warned about as they are read)
                    len(train_convs),
                    len(train_convs) - len(encoded),  # every answer past data.seq_len: nothing to learn
                    len(val_convs),
                    times,
                    len(blended),
                    sum(len(i) for i, _ in blended),
                )
            )
        for name, spec in (self.cfg.get("val_sources") or {}).items():
            if spec is None:
                continue
            convs = load_conversations(name, _plain(spec), f"data.val_sources.{name}").conversations[
                : self.cfg.val_max_conversations
            ]
            val[name] = [e for e in map(self.encode, convs) if e]
        if not train:
            raise ChipadaptError(
                f"data.sources: no training conversations with an answer inside data.seq_len={self.cfg.seq_len} tokens"
            )
        cut = {row[0]: row[4] for row in rows if row[4]}
        if cut:
            log.warning(
                "left out of training, every answer past data.seq_len=%d tokens: %s",
                self.cfg.seq_len,
                ", ".join(f"{n} of {name}" for name, n in cut.items()),
            )
        rng.shuffle(train)
        self.train_samples = train
        # Each validation conversation with its index: the item validation's intervals resample.
        self.val_sets = {k: IndexedConversations(v) for k, v in val.items() if v}
        lengths = [len(ids) for ids, _ in train]
        self.train_set = self.train_rows = (
            [[train[i] for i in b] for b in pack_first_fit(lengths, self.cfg.seq_len)] if self.cfg.packing else train
        )
        learned = sum(sum(label != -100 for label in labels) for _, labels in train)
        self.rows = rows
        self.stats = {
            "train_conversations": len(train),
            "train_sequences": len(self.train_rows),
            "packing": bool(self.cfg.packing),
            "tokens": sum(lengths),
            "learned_tokens": learned,
            "learned_share": learned / max(sum(lengths), 1),
            "packing_waste": packing_waste(lengths, self.cfg.seq_len),
            "padding_waste": padding_waste(lengths, self.cfg.micro_batch_size),
            "packing_efficiency": 1 - packing_waste(lengths, self.cfg.seq_len)
            if self.cfg.packing
            else 1 - padding_waste(lengths, self.cfg.micro_batch_size),
            "val_item": "conversation",  # what validation's intervals resample (modules/val_items.py)
            "sources": [
                dict(
                    zip(
                        (
                            "name",
                            "conversations",
                            "no_answer",
                            "train",
                            "too_long",
                            "val",
                            "weight_x_epochs",
                            "blended",
                            "blended_tokens",
                        ),
                        r,
                    )
                )
                for r in rows
            ],
        }

    def summary(self) -> Table:
        s = self.stats
        table = Table(
            title=f"SFT blend: {s['train_conversations']} conversations in {s['train_sequences']} rows "
            f"of <= {self.cfg.seq_len} tokens; "
            f"{100 * s['learned_share']:.1f}% of tokens learned; waste: packed {100 * s['packing_waste']:.1f}%, "
            f"padded {100 * s['padding_waste']:.1f}% ({'packing' if s['packing'] else 'padding'} used)"
        )
        columns = (
            "source",
            "conversations",
            "no assistant turn",
            "train",
            "answer past seq_len",
            "val",
            "weight x epochs",
            "blended",
            "tokens",
        )
        for column in columns:
            table.add_column(column, justify="left" if column == "source" else "right")
        for name, n, no_answer, tr, cut, va, times, blended, tokens in self.rows:
            table.add_row(
                name, str(n), str(no_answer), str(tr), str(cut), str(va), f"{times:g}", str(blended), f"{tokens:,}"
            )
        return table

    def collate(self, items):
        return (
            collate_packed(items, self.cfg.seq_len, self.pad_id)
            if self.cfg.packing
            else collate_padded(items, self.pad_id)
        )

    def val_collate(self, items):
        rows, samples = zip(*items)
        batch = collate_padded(list(samples), self.pad_id)  # validation conversations one per row
        batch["row_index"] = torch.tensor(rows, dtype=torch.long)
        return batch
