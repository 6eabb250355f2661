"""Conversations with attribute labels -> (token ids, label vector, mask) for the attribute model."""

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from chipadapt.data.conversations import Conversation, held_out, read_conversations
from chipadapt.data.resume_sampler import resumable_loader
from chipadapt.errors import ChipadaptError


def encode_for_rating(tokenizer, template, conversation: Conversation, max_tokens: int) -> list[int]:
    """The rendered conversation, cut from the left: the end (the rated reply) is what matters."""
    ids = tokenizer(template.render(conversation.messages).text, add_special_tokens=False).input_ids
    return ids[-max_tokens:]


def collate_ratings(items, pad_id: int, n_attributes: int):
    width = max(len(ids) for ids, _, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.zeros((len(items), n_attributes))
    mask = torch.zeros((len(items), n_attributes))
    for r, (ids, values, present) in enumerate(items):
        input_ids[r, : len(ids)] = torch.tensor(ids)  # right padding: the head finds the last real token
        attention[r, : len(ids)] = 1
        labels[r], mask[r] = torch.tensor(values), torch.tensor(present)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "label_mask": mask}


class AttributeDataModule(L.LightningDataModule):
    def __init__(self, data, tokenizer, seed: int):
        super().__init__()
        self.cfg, self.tokenizer, self.seed = data, tokenizer, seed
        self.template = instantiate(data.template)(tokenizer=tokenizer)
        self.attributes = list(data.attributes.names)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stats: dict = {}

    def _item(self, conv: Conversation):
        values = [float(conv.attributes.get(a, 0.0)) for a in self.attributes]
        present = [1.0 if a in conv.attributes else 0.0 for a in self.attributes]
        return encode_for_rating(self.tokenizer, self.template, conv, self.cfg.seq_len), values, present

    def setup(self, stage=None):
        if self.stats:
            return
        convs = []
        for name, spec in self.cfg.sources.items():
            convs += read_conversations(name, OmegaConf.to_container(spec, resolve=True))
        convs = [c for c in convs if any(a in c.attributes for a in self.attributes)]
        if not convs:
            raise ChipadaptError(f"data.sources: no conversation carries any of the attributes {self.attributes}")
        val = [c for c in convs if held_out(c.id, self.cfg.val_fraction)]
        train = [c for c in convs if not held_out(c.id, self.cfg.val_fraction)]
        self.train_items, self.val_items = [self._item(c) for c in train], [self._item(c) for c in val]
        means = []
        for i, _ in enumerate(self.attributes):
            present = [v[i] for _, v, p in self.train_items if p[i]]
            means.append(sum(present) / len(present) if present else 0.0)
        self.label_means = means
        self.stats = {
            "train_conversations": len(train),
            "val_conversations": len(val),
            "attributes": self.attributes,
            "label_means": dict(zip(self.attributes, means)),
            "train_sequences": len(train),
        }

    def _collate(self, items):
        return collate_ratings(items, self.pad_id, len(self.attributes))

    def train_dataloader(self):
        return resumable_loader(
            self.train_items, self.trainer, int(self.cfg.micro_batch_size), self._collate, shuffle_seed=self.seed
        )

    def val_dataloader(self):
        return DataLoader(self.val_items, batch_size=self.cfg.micro_batch_size, shuffle=False, collate_fn=self._collate)
