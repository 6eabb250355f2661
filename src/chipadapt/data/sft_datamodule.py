"""SFT / SteerLM data: a weighted blend of conversation sources, loss on assistant tokens only.

`data.packing=true` packs several conversations into each `seq_len` row with position ids restarting
per conversation and a block-diagonal attention mask (no attention across conversations);
`packing=false` pads each batch to its longest conversation. The waste of both is measured on the
training set and reported in the run's manifest either way.
"""

import logging
import random

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table
from torch.utils.data import DataLoader

from chipadapt.data.chat_templates import attribute_string, tokenize_with_labels
from chipadapt.data.conversations import Conversation, held_out, read_conversations
from chipadapt.data.resume_sampler import resumable_loader
from chipadapt.data.sft_batches import collate_packed, collate_padded, pack_first_fit, packing_waste, padding_waste
from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)


class SFTDataModule(L.LightningDataModule):
    def __init__(self, data: DictConfig, tokenizer, separator_token: str, token_cache_dir: str, seed: int):
        super().__init__()
        self.cfg, self.tokenizer, self.seed = data, tokenizer, seed
        self.template = instantiate(data.template)(tokenizer=tokenizer)
        self.pad_id = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.convert_tokens_to_ids(separator_token)
        )
        self.stats: dict = {}
        self.val_split_names: list[str] = []

    def encode(self, conversation: Conversation) -> tuple[list[int], list[int]] | None:
        attrs = (
            attribute_string(conversation.attributes, list(self.cfg.attributes.order))
            if self.cfg.attributes.use
            else ""
        )
        ids, labels = tokenize_with_labels(
            self.tokenizer, self.template.render(conversation.messages, attrs), self.cfg.seq_len
        )
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
            spec = OmegaConf.to_container(spec, resolve=True)
            convs = read_conversations(name, spec)
            val_convs = [c for c in convs if held_out(c.id, self.cfg.val_fraction)] if self.cfg.val_fraction else []
            train_convs = [c for c in convs if not (self.cfg.val_fraction and held_out(c.id, self.cfg.val_fraction))]
            encoded = [e for e in map(self.encode, train_convs) if e]
            times = spec.get("weight", 1.0) * spec.get("epochs", 1.0)
            whole, frac = int(times), times - int(times)
            blended = encoded * whole + rng.sample(encoded, round(frac * len(encoded)))
            train += blended
            if val_convs:
                val[name] = [e for e in map(self.encode, val_convs[: self.cfg.val_max_conversations]) if e]
            rows.append(
                (
                    name,
                    len(convs),
                    len(train_convs),
                    len(val_convs),
                    times,
                    len(blended),
                    sum(len(i) for i, _ in blended),
                )
            )
        for name, spec in (self.cfg.get("val_sources") or {}).items():
            if spec is None:
                continue
            convs = read_conversations(name, OmegaConf.to_container(spec, resolve=True))[
                : self.cfg.val_max_conversations
            ]
            val[name] = [e for e in map(self.encode, convs) if e]
        if not train:
            raise ChipadaptError(
                f"data.sources: no training conversations with an answer inside data.seq_len={self.cfg.seq_len} tokens"
            )
        rng.shuffle(train)
        self.train_samples, self.val_samples = train, {k: v for k, v in val.items() if v}
        self.val_split_names = list(self.val_samples)
        lengths = [len(ids) for ids, _ in train]
        self.train_rows = (
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
            "sources": [
                dict(zip(("name", "conversations", "train", "val", "weight_x_epochs", "blended", "blended_tokens"), r))
                for r in rows
            ],
        }

    def summary(self) -> Table:
        s = self.stats
        table = Table(
            title=f"SFT blend: {s['train_conversations']} conversations in {s['train_sequences']} rows of <= {self.cfg.seq_len} tokens; "
            f"{100 * s['learned_share']:.1f}% of tokens learned; waste: packed {100 * s['packing_waste']:.1f}%, "
            f"padded {100 * s['padding_waste']:.1f}% ({'packing' if s['packing'] else 'padding'} used)"
        )
        for column in ("source", "conversations", "train", "val", "weight x epochs", "blended", "tokens"):
            table.add_column(column, justify="left" if column == "source" else "right")
        for name, n, tr, va, times, blended, tokens in self.rows:
            table.add_row(name, str(n), str(tr), str(va), f"{times:g}", str(blended), f"{tokens:,}")
        return table

    def _collate(self, items):
        return (
            collate_packed(items, self.cfg.seq_len, self.pad_id)
            if self.cfg.packing
            else collate_padded(items, self.pad_id)
        )

    def train_dataloader(self) -> DataLoader:
        # A seeded order per epoch, continued exactly after a resume (data/resume_sampler.py).
        return resumable_loader(
            self.train_rows,
            self.trainer,
            int(self.cfg.micro_batch_size),
            self._collate,
            int(self.cfg.num_workers),
            shuffle_seed=self.seed,
        )

    def val_dataloader(self):
        return [
            DataLoader(
                self.val_samples[name],
                batch_size=self.cfg.micro_batch_size,
                shuffle=False,
                collate_fn=lambda items: collate_padded(items, self.pad_id),
            )
            for name in self.val_split_names
        ]
