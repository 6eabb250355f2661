"""Conversations with attribute labels -> (token ids, label vector, mask) for the attribute model."""

import logging

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.base import TrainingDataModule, pad_token_id
from chipadapt.data.blend import order_digest
from chipadapt.data.conversations import Conversation, read_conversations, refuse_reply_attributes
from chipadapt.data.holdout import conversation_digest, held_out, without_copies
from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)


def encode_for_rating(tokenizer, template, conversation: Conversation, max_tokens: int) -> list[int]:
    """The rendered conversation, cut from the left: the end (the rated reply) is what matters."""
    ids = tokenizer(template.render(conversation.messages).text, add_special_tokens=False).input_ids
    return ids[-max_tokens:]


def collate_ratings(items, pad_id: int, n_attributes: int):
    """A batch of (ids, labels, which are given) items; a held-out item's fourth element, its group's
    index (the conversations held out together), becomes `group`: intervals resample groups, not threads."""
    width = max(len(item[0]) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.zeros((len(items), n_attributes))
    mask = torch.zeros((len(items), n_attributes))
    for r, (ids, values, present, *_) in enumerate(items):
        input_ids[r, : len(ids)] = torch.tensor(ids)  # right padding: the head finds the last real token
        attention[r, : len(ids)] = 1
        labels[r], mask[r] = torch.tensor(values), torch.tensor(present)
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "label_mask": mask}
    if all(len(item) == 4 for item in items):
        batch["group"] = torch.tensor([item[3] for item in items], dtype=torch.long)
    return batch


def _numbers(item) -> tuple[np.ndarray, np.ndarray]:
    """A training item (token ids, labels, which are given) as the integer arrays order_digest hashes."""
    ids, values, present = item
    return np.asarray(ids, dtype=np.int64), np.asarray([*values, *present], dtype=np.float64).view(np.int64)


class AttributeDataModule(TrainingDataModule):
    def __init__(self, data, tokenizer, seed: int):
        super().__init__(data.micro_batch_size, data.num_workers, seed)
        self.cfg, self.tokenizer = data, tokenizer
        self.template = instantiate(data.template)(tokenizer=tokenizer)
        self.attributes = list(data.attributes.names)
        self.pad_id = pad_token_id(tokenizer)

    def _item(self, conv: Conversation):
        values = [float(conv.attributes.get(a, 0.0)) for a in self.attributes]
        present = [1.0 if a in conv.attributes else 0.0 for a in self.attributes]
        return encode_for_rating(self.tokenizer, self.template, conv, self.cfg.seq_len), values, present

    def setup(self, stage=None):
        if self.stats:
            return
        convs, unlabelled = [], {}
        for name, spec in self.cfg.sources.items():
            if spec is None:  # a source switched off (data.sources.NAME=null)
                continue
            plain = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec
            read = read_conversations(name, plain, f"data.sources.{name}")
            for conversation in read:  # a reply's own attributes are what it was generated under, not its rating
                refuse_reply_attributes(conversation, "stage=attribute_model")
            labelled = [c for c in read if any(a in c.attributes for a in self.attributes)]
            if len(labelled) < len(read):
                unlabelled[name] = len(read) - len(labelled)
            convs += labelled
        if unlabelled:  # nothing to regress on: counted, not dropped silently
            log.warning(
                "left out, no label for any of %s: %s",
                ", ".join(self.attributes),
                ", ".join(f"{n} of {name}" for name, n in unlabelled.items()),
            )
        if not convs:
            raise ChipadaptError(f"data.sources: no conversation carries any of the attributes {self.attributes}")
        # By group where the source sets `group_by` (OASST: the message tree): a sibling thread's shared turns
        # trained on would make the held-out MAE partly in-sample (data/conversations.py).
        val = [c for c in convs if held_out(c.holdout_key, self.cfg.val_fraction)]
        # Held out by id, a conversation can still be trained on as a copy under another id (another
        # source, another line): the held-out MAE would then be in-sample (data/holdout.py).
        validated = {conversation_digest(c.messages) for c in val}
        train, copies = without_copies(
            [c for c in convs if not held_out(c.holdout_key, self.cfg.val_fraction)],
            lambda c: conversation_digest(c.messages),
            validated,
        )
        if copies:
            log.warning(
                "left out of training %d conversation(s) whose content is a held-out conversation's under another "
                "id (manifest: data.held_out_copies_dropped)",
                copies,
            )
        self.train_set = self.train_items = [self._item(c) for c in train]
        # Each held-out item with its group's index (its own where the source sets no group_by): the threads of
        # one OASST tree share turns and raters, so the attribute model's intervals resample trees.
        group_index = {key: i for i, key in enumerate(dict.fromkeys(c.holdout_key for c in val))}
        self.val_sets = {"attributes": [(*self._item(c), group_index[c.holdout_key]) for c in val]} if val else {}
        means, counts = [], {}
        for i, name in enumerate(self.attributes):
            present = [v[i] for _, v, p in self.train_items if p[i]]
            means.append(sum(present) / len(present) if present else 0.0)
            counts[name] = len(present)
        self.label_means, self.train_labels = means, counts
        unlabelled_heads = [name for name, n in counts.items() if not n]
        if len(unlabelled_heads) == len(self.attributes):
            copied = f", the other {copies} copies of held-out ones under another id," if copies else ""
            raise ChipadaptError(
                f"data.val_fraction={self.cfg.val_fraction}: of {len(convs)} labelled conversations {len(val)} are "
                f"held out for validation{copied} and none is left to train on"
            )
        if unlabelled_heads:
            # Their heads stay as initialised: the model folder records them (steerlm/attribute_record.py),
            # and annotate and bootstrap write null for them, not an untrained head's output as a label.
            log.warning(
                "data.attributes.names: no training conversation is labelled with %s: untrained heads, written "
                "as null by annotate and bootstrap (data.attributes.names=[%s] trains only the labelled ones)",
                ", ".join(unlabelled_heads),
                ",".join(name for name in self.attributes if counts[name]),
            )
        self.stats = {
            "train_conversations": len(train),
            "val_conversations": len(val),
            "val_groups": len(group_index),  # held out together (OASST: trees): the intervals' independent units
            "held_out_copies_dropped": copies,
            "unlabelled": unlabelled,
            "attributes": self.attributes,
            "label_means": dict(zip(self.attributes, means)),
            "train_labels": counts,
            "train_sequences": len(train),
            # What a checkpoint records, to tell a resume on other training conversations (copies of held-out
            # ones left out since, other sources): stages/checkpoint_records.py.
            "training_order": {"hash": order_digest(part for item in self.train_items for part in _numbers(item))},
        }

    def collate(self, items):
        return collate_ratings(items, self.pad_id, len(self.attributes))
