"""SFT / SteerLM data: a weighted blend of conversation sources, loss on assistant tokens only.

`data.packing=true` packs several conversations into each `seq_len` row with position ids restarting
per conversation and a block-diagonal attention mask (no attention across conversations);
`packing=false` pads each batch to its longest conversation. The waste of both is measured on the
training set and reported in the run's manifest either way.
"""

import logging
import random
from collections import Counter
from collections.abc import Sequence

import torch
from hydra.utils import instantiate
from jinja2.exceptions import TemplateError
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from chipadapt.data.base import TrainingDataModule, pad_token_id
from chipadapt.data.blend import copies, order_digest
from chipadapt.data.chat_templates import attribute_string, tokenize_with_labels
from chipadapt.data.conversations import NO_SPLIT, Conversation, load_conversations, refuse_reply_attributes
from chipadapt.data.holdout import conversation_digest, held_out
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

    def encode(self, conversation: Conversation) -> tuple[tuple[list[int], list[int]] | None, int]:
        """(ids, labels) of the conversation within data.seq_len tokens (None when no answer token is
        inside them), and how many answer tokens lie past data.seq_len, not learned."""
        if self.cfg.attributes.use:
            refuse_reply_attributes(conversation, "data.attributes.use=true")
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
        ids, labels = tokenize_with_labels(self.tokenizer, rendered, None)
        cut = sum(label != -100 for label in labels[self.cfg.seq_len :])
        ids, labels = ids[: self.cfg.seq_len], labels[: self.cfg.seq_len]
        return ((ids, labels) if any(label != -100 for label in labels) else None), cut

    def encode_val(self, conversations: list[Conversation]) -> tuple[list[tuple[list[int], list[int]]], list[str]]:
        """The validation samples with an answer inside data.seq_len, and each one's group (its `group_by`
        value, else its id): train.val_items.jsonl records it, for an interval over groups (OASST trees)."""
        encoded = [(c, self.encode(c)[0]) for c in conversations]
        return [sample for _, sample in encoded if sample], [c.holdout_key for c, sample in encoded if sample]

    def encode_all(
        self, conversations: list[Conversation]
    ) -> tuple[list[tuple[list[int], list[int]]], list[tuple[str, int]]]:
        """The samples with an answer inside data.seq_len, and, for each of them whose answers run past
        it, where it was read (file:line) and the answer tokens cut."""
        results = [(c, *self.encode(c)) for c in conversations]
        return [sample for _, sample, _ in results if sample], [
            (c.where, n) for c, sample, n in results if sample and n
        ]

    def warn_unknown_attributes(self, key: str, conversations: list[Conversation]) -> dict[str, int] | None:
        """{name: conversations} of attribute names outside data.attributes.order, with one line when
        there are any (None when attributes do not enter training). A warning, as chat.py's for
        generate.attributes: a name of one's own is allowed (SteerLM takes any), but a misspelt one
        (`qualty`) teaches an attribute no one asks for while the conversation loses its label."""
        if not self.cfg.attributes.use:
            return None
        order = list(self.cfg.attributes.order)
        unknown = Counter(name for c in conversations for name in set(c.attributes) - set(order))
        carriers = [c for c in conversations if set(c.attributes) - set(order)]
        if carriers:
            log.warning(
                "%s: %d conversation%s attribute names outside data.attributes.order: %s (first: %s); SteerLM "
                "puts them into the prompt as they are, and chat.py warns about them as unfamiliar; fix the names "
                "or add them to data.attributes.order (it has: %s)",
                key,
                len(carriers),
                " carries" if len(carriers) == 1 else "s carry",
                ", ".join(sorted(unknown)),
                carriers[0].where,
                ", ".join(order),
            )
        return dict(sorted(unknown.items()))

    def warn_not_held_out(self) -> list[str]:
        """The validation sources whose split is none (`only_eval_split: {fraction: null}`, what
        eval.eda_script.eval_fraction=null gives eda_heldout), each told in one line: they validate on
        every row of their file, which a training source (eda_scripts then leaves nothing out, and its
        file holds the same scripts) may hold too, so their before/after figures are no held-out ones."""
        whole = [
            f"data.sources.{name}"
            for name, spec in self.cfg.sources.items()
            if spec is not None and _plain(spec).get("exclude_eval_split") == NO_SPLIT
        ]
        named = []
        for name, spec in (self.cfg.get("val_sources") or {}).items():
            if spec is None or _plain(spec).get("only_eval_split") != NO_SPLIT:
                continue
            named.append(name)
            log.warning(
                "data.val_sources.%s: not held out: only_eval_split.fraction is null (eval.eda_script.eval_fraction="
                "null), so it validates on every row of %s, %s; its validation and before/after figures may be on "
                "rows the model trained on (manifest: data.val_not_held_out)",
                name,
                _plain(spec).get("path"),
                f"which {' and '.join(whole)} also trains on, nothing left out"
                if whole
                else "which a training source may also hold",
            )
        return named

    def read_val_sources(self) -> dict[str, list[Conversation]]:
        """The conversations each validation-only source (data.val_sources) validates on, by name."""
        out = {}
        for name, spec in (self.cfg.get("val_sources") or {}).items():
            if spec is None:
                continue
            key = f"data.val_sources.{name}"
            convs = load_conversations(name, _plain(spec), key).conversations[: self.cfg.val_max_conversations]
            self.warn_unknown_attributes(key, convs)
            out[name] = convs
        return out

    @staticmethod
    def tell_dropped_copies(rows: list[dict]) -> None:
        dropped = {row["name"]: row["val_duplicates_dropped"] for row in rows if row["val_duplicates_dropped"]}
        if dropped:
            log.warning(
                "left out of training %d conversation%s whose content is a validation conversation's under another "
                "id: %s (manifest: sources[].val_duplicates_dropped)",
                sum(dropped.values()),
                "" if sum(dropped.values()) == 1 else "s",
                ", ".join(f"{n} of data.sources.{name}" for name, n in dropped.items()),
            )

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        if self.stats:
            return
        rng = random.Random(self.seed)
        train, val, rows, first_cut = [], {}, [], {}
        self.val_groups: dict[str, list[str]] = {}  # per split, each validation row's group (encode_val)
        not_held_out = self.warn_not_held_out()
        loaded_sources, splits = {}, {}
        for name, spec in self.cfg.sources.items():
            if spec is None:  # a source switched off (data.sources.NAME=null)
                continue
            loaded_sources[name] = load_conversations(name, _plain(spec), f"data.sources.{name}")
            convs = loaded_sources[name].conversations
            # By group where the source sets `group_by` (OASST: the message tree), else by the conversation's id.
            held = [bool(self.cfg.val_fraction) and held_out(c.holdout_key, self.cfg.val_fraction) for c in convs]
            splits[name] = [c for c, h in zip(convs, held) if h], [c for c, h in zip(convs, held) if not h]
        val_only = self.read_val_sources()
        # Held out by id, a conversation can still be trained on as a copy under another id (another
        # source, another line): every training conversation with a validation one's content is left out.
        validated = {conversation_digest(c.messages) for held, _ in splits.values() for c in held}
        # Not a validation source that is not held out (warn_not_held_out): it validates on training rows by design.
        validated |= {
            conversation_digest(c.messages) for n, convs in val_only.items() if n not in not_held_out for c in convs
        }
        for name, loaded in loaded_sources.items():
            key = f"data.sources.{name}"
            convs = loaded.conversations
            unknown = self.warn_unknown_attributes(key, convs)
            val_convs, kept = splits[name]
            train_convs = [c for c in kept if conversation_digest(c.messages) not in validated]
            encoded, cut = self.encode_all(train_convs)
            if cut:
                first_cut[name] = cut[0][0]
            times = loaded.source.weight * loaded.source.epochs
            whole, extra = copies(times, len(encoded), key)
            blended = encoded * whole + rng.sample(encoded, extra)
            train += blended
            if val_convs:
                val[name], self.val_groups[name] = self.encode_val(val_convs[: self.cfg.val_max_conversations])
            rows.append(
                {
                    "name": name,
                    "conversations": len(convs),
                    "no_answer": loaded.no_answer,  # records with no assistant turn (warned about as they are read)
                    "train": len(train_convs),
                    "too_long": len(train_convs) - len(encoded),  # every answer past data.seq_len: nothing to learn
                    "answers_cut": len(cut),  # trained on, but answer tokens past data.seq_len are not learned
                    "answer_tokens_cut": sum(n for _, n in cut),
                    "val": len(val_convs),
                    # left out of training: the content of a validation conversation (held out, or of a
                    # data.val_sources that is held out) under another id
                    "val_duplicates_dropped": len(kept) - len(train_convs),
                    "weight_x_epochs": times,
                    "blended": len(blended),
                    "blended_tokens": sum(len(i) for i, _ in blended),
                    **({} if unknown is None else {"unknown_attributes": unknown}),
                }
            )
        for name, convs in val_only.items():
            val[name], self.val_groups[name] = self.encode_val(convs)
        self.tell_dropped_copies(rows)
        if not train:
            raise ChipadaptError(
                f"data.sources: no training conversations with an answer inside data.seq_len={self.cfg.seq_len} tokens"
            )
        too_long = {row["name"]: row["too_long"] for row in rows if row["too_long"]}
        if too_long:
            log.warning(
                "left out of training, every answer past data.seq_len=%d tokens: %s",
                self.cfg.seq_len,
                ", ".join(f"{n} of {name}" for name, n in too_long.items()),
            )
        cut = {row["name"]: row["answers_cut"] for row in rows if row["answers_cut"]}
        if cut:
            log.warning(
                "data.seq_len=%d cuts the answers of %d training conversation%s (%s answer tokens not learned): %s; "
                "raise data.seq_len to learn them whole",
                self.cfg.seq_len,
                sum(cut.values()),
                "" if sum(cut.values()) == 1 else "s",
                f"{sum(row['answer_tokens_cut'] for row in rows):,}",
                ", ".join(f"{n} of data.sources.{name} (first: {first_cut[name]})" for name, n in cut.items()),
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
            "sources": rows,
            # What a checkpoint records, to tell a resume on another order (stages/resume_settings.py).
            "training_order": {"hash": order_digest(ids for ids, _ in train)},
            # Validation splits whose figures may be on rows the model trains on (`warn_not_held_out`).
            **({"val_not_held_out": not_held_out} if not_held_out else {}),
        }

    def summary(self) -> Table:
        s = self.stats
        table = Table(
            title=f"SFT blend: {s['train_conversations']} conversations in {s['train_sequences']} rows "
            f"of <= {self.cfg.seq_len} tokens; "
            f"{100 * s['learned_share']:.1f}% of tokens learned; waste: packed {100 * s['packing_waste']:.1f}%, "
            f"padded {100 * s['padding_waste']:.1f}% ({'packing' if s['packing'] else 'padding'} used)"
        )
        columns = {
            "source": "name",
            "conversations": "conversations",
            "no assistant turn": "no_answer",
            "train": "train",
            "answer past seq_len": "too_long",
            "answers cut": "answers_cut",
            "val": "val",
            "weight x epochs": "weight_x_epochs",
            "blended": "blended",
            "tokens": "blended_tokens",
        }
        for column in columns:
            table.add_column(column, justify="left" if column == "source" else "right")
        for row in self.rows:
            cells = {column: str(row[key]) for column, key in columns.items()}
            if row["answers_cut"]:
                cells["answers cut"] += f" ({row['answer_tokens_cut']:,} tokens)"
            cells["weight x epochs"] = f"{row['weight_x_epochs']:g}"
            cells["tokens"] = f"{row['blended_tokens']:,}"
            table.add_row(*cells.values())
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
