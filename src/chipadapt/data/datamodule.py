"""The DataModule for continued pretraining: sources -> token cache -> blend -> packed sequences.

Validation splits: documents held out of the training sources (into the split each source names,
"domain" by default) and one split per entry of `data.val_sources` (e.g. general prose, to watch
forgetting), each reported separately, each up to `data.val_max_bytes` of text (data/val_text.py).
"""

import logging
import time

import numpy as np
from omegaconf import DictConfig, OmegaConf

from chipadapt.data.base import TrainingDataModule, pad_token_id
from chipadapt.data.blend import BlendRow, blend_order, blend_table, order_digest
from chipadapt.data.holdout import document_copies, held_out_mask
from chipadapt.data.packing import PackedSequences, collate_causal_lm
from chipadapt.data.source_spec import SourceSpec, source_spec
from chipadapt.data.token_cache import TokenizedSource, tokenize_source, tokenizer_fingerprint
from chipadapt.data.val_text import ValidationText, validation_text
from chipadapt.errors import ChipadaptError
from chipadapt.models.token_bytes import byte_count_rule, token_byte_lengths

log = logging.getLogger(__name__)


def is_special_token(tokenizer, token: str) -> bool:
    """A special token by the tokenizer's lists or by its added token's own flag: Llama-3's
    `<|end_of_text|>` is an added token marked special, which all_special_tokens (bos, eos, pad, unk and
    additional_special_tokens) does not list."""
    if token in tokenizer.all_special_tokens:
        return True
    return any(added.content == token and added.special for added in tokenizer.added_tokens_decoder.values())


class PretrainDataModule(TrainingDataModule):
    # Its validation rows are packed documents, each token's document in `item_index`: the space a
    # Llama-2-style tokenizer prepends to each is taken off its bytes (modules/causal_lm.py validation_step),
    # and the run's validation settings carry the byte-count mark that says so (stages/common.py
    # validation_settings). Both read this, not the batch's keys or the config's `_target_` string.
    packs_documents = True

    def __init__(self, data: DictConfig, tokenizer, separator_token: str, token_cache_dir: str, seed: int):
        # The blend is shuffled once when built: one pass in its order (shuffle=False).
        super().__init__(data.micro_batch_size, data.num_workers, seed, shuffle=False)
        self.data = data
        self.tokenizer = tokenizer
        self.token_cache_dir = token_cache_dir
        if separator_token not in tokenizer.get_vocab():
            raise ChipadaptError(f"model.doc_separator: {separator_token!r} is not a token of the model's tokenizer")
        if not is_special_token(tokenizer, separator_token):
            # A text token ("\n\n") also occurs inside documents, so nothing marks where one ends, and
            # validation would score its bytes as the document's: item bytes no longer sum to the split's.
            raise ChipadaptError(
                f"model.doc_separator: {separator_token!r} is text to the model's tokenizer, not markup; give one of "
                f"its special tokens: {', '.join(map(repr, tokenizer.all_special_tokens))}"
            )
        self.separator_id = tokenizer.convert_tokens_to_ids(separator_token)
        self.pad_id = pad_token_id(tokenizer, self.separator_id)
        self.blend: list[BlendRow] = []
        self._tokenized: tuple[dict[str, TokenizedSource], dict[str, TokenizedSource]] | None = None
        self._tokenize_seconds = 0.0
        self._token_bytes: np.ndarray | None = None
        self.val_text: dict[str, ValidationText] = {}

    # -- preparation ---------------------------------------------------------------------------
    def _specs(self) -> tuple[dict[str, SourceSpec], dict[str, SourceSpec]]:
        sources = OmegaConf.to_container(self.data.sources, resolve=True) if self.data.sources else {}
        val_sources = OmegaConf.to_container(self.data.val_sources, resolve=True) if self.data.val_sources else {}
        # A source set to null (data.sources.NAME=null) is switched off, as in the SFT blend.
        train = {name: source_spec(spec, f"data.sources.{name}") for name, spec in sources.items() if spec is not None}
        val = {
            name: source_spec(spec, f"data.val_sources.{name}")
            for name, spec in val_sources.items()
            if spec is not None
        }
        if not train:
            raise ChipadaptError("data.sources: no training sources configured")
        return train, val

    def _tokenize_all(self) -> tuple[dict[str, TokenizedSource], dict[str, TokenizedSource]]:
        if self._tokenized is None:
            start = time.perf_counter()
            train_specs, val_specs = self._specs()
            fingerprint = tokenizer_fingerprint(self.tokenizer)
            tokenize = lambda spec, key: tokenize_source(spec, key, self.tokenizer, self.token_cache_dir, fingerprint)  # noqa: E731
            train = {n: tokenize(s, f"data.sources.{n}") for n, s in train_specs.items()}
            val = {n: tokenize(s, f"data.val_sources.{n}") for n, s in val_specs.items()}
            self._tokenized = (train, val)
            self._tokenize_seconds = time.perf_counter() - start
        return self._tokenized

    def summary(self):
        """The blend table printed before training."""
        return blend_table(
            self.blend, self.stats["packing_efficiency"], self.stats["train_sequences"], self.data.seq_len
        )

    def prepare_data(self) -> None:
        # Runs on one process per node (builds missing token-cache entries); setup() on every
        # process then reuses what this process already opened, or opens the cache.
        self._tokenize_all()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._tokenize_all()
        start = time.perf_counter()
        train_specs, _ = self._specs()
        seq_len = int(self.data.seq_len)

        names = list(train)
        tokenized = [train[n] for n in names]
        masks = []
        for name in names:
            spec = train_specs[name]
            if spec.weight < 0 or spec.epochs < 0:
                raise ChipadaptError(f"data.sources.{name}: weight and epochs must be >= 0")
            fraction = float(self.data.val_fraction) if spec.val_split else 0.0
            masks.append(held_out_mask(train[name].doc_ids, fraction))
        # A held-out text is never trained on, whatever id its copies carry (data/holdout.py).
        copies = document_copies(tokenized, masks, list(val.values()))
        plan, held = [], {}  # held: validation split -> rows of (source, doc)
        for index, (name, mask, copy) in enumerate(zip(names, masks, copies)):
            spec = train_specs[name]
            plan.append((name, train[name], np.flatnonzero(~mask & ~copy), spec.weight * spec.epochs))
            if mask.any():
                rows = np.stack([np.full(mask.sum(), index), np.flatnonzero(mask)], axis=1)
                held.setdefault(spec.val_split, []).append(rows)
        order, self.blend = blend_order(plan, seed=self.seed)
        for row, copy in zip(self.blend, copies):
            row.val_duplicates_dropped = int(copy.sum())
            row.val_docs -= row.val_duplicates_dropped  # blend_order counts every document not trained on
        self._tell_dropped_copies()
        self.train_set = PackedSequences(tokenized, order, seq_len, self.separator_id, shuffle_seed=self.seed)
        if len(self.train_set) == 0:
            raise ChipadaptError(
                f"data: the blend holds {self.train_set.total_tokens} tokens, "
                f"fewer than one sequence of data.seq_len={seq_len}"
            )

        # The same held-out text at any seq_len and with any tokenizer (data/val_text.py).
        self.val_text = {}
        for split, parts in held.items():
            self._validation_split(split, tokenized, names, np.concatenate(parts).astype(np.int64))
        for name, tok in val.items():
            if name in self.val_sets:
                raise ChipadaptError(
                    f"data.val_sources.{name}: a training source already holds out documents into split {name!r}"
                )
            rows = np.stack([np.zeros(tok.num_docs, dtype=np.int64), np.arange(tok.num_docs)], axis=1)
            self._validation_split(name, [tok], [name], rows)
        log.info(
            "validation text per split (data.val_max_bytes=%s): %s",
            self.data.val_max_bytes,
            ", ".join(f"{n} {t.bytes} bytes of {len(t.keys)} documents" for n, t in self.val_text.items()),
        )

        every = list(train.values()) + list(val.values())
        self.stats = {
            # Reading/tokenizing (or opening the cache) plus blending and packing.
            "prep_seconds": self._tokenize_seconds + time.perf_counter() - start,
            "cache_hits": sum(not t.built for t in every),
            "cache_misses": sum(t.built for t in every),
            "train_sequences": len(self.train_set),
            "train_tokens": len(self.train_set) * seq_len,
            "packing_efficiency": self.train_set.packing_efficiency,
            "val_sequences": {n: len(s) for n, s in self.val_sets.items()},
            "val_text": {n: text.record() for n, text in self.val_text.items()},
            "val_item": "document",  # what validation's intervals resample (modules/val_items.py)
            "blend": [vars(r) for r in self.blend],
            "val_duplicates_dropped": sum(r.val_duplicates_dropped for r in self.blend),
            "token_cache_keys": {n: t.key for n, t in {**train, **val}.items()},
            # What a checkpoint records, to tell a resume on another order (stages/resume_settings.py).
            "training_order": {"hash": order_digest([order])},
        }
        log.info(
            "data: %d training sequences of %d tokens, packing efficiency %.2f%%, prepared in %.2fs",
            len(self.train_set),
            seq_len,
            100 * self.train_set.packing_efficiency,
            self.stats["prep_seconds"],
        )

    def _tell_dropped_copies(self) -> None:
        dropped = {r.name: r.val_duplicates_dropped for r in self.blend if r.val_duplicates_dropped}
        if dropped:
            log.warning(
                "data: left out of training %d document%s whose text is a validation document's (held out, or of "
                "data.val_sources) under another id: %s (manifest: data.val_duplicates_dropped; near copies are "
                "curation's to find)",
                sum(dropped.values()),
                "" if sum(dropped.values()) == 1 else "s",
                ", ".join(f"{n} of data.sources.{name}" for name, n in dropped.items()),
            )

    def _validation_split(self, split: str, sources: list, names: list[str], rows: np.ndarray) -> None:
        if self._token_bytes is None:
            self._token_bytes = token_byte_lengths(self.tokenizer, len(self.tokenizer)).numpy()
        text = validation_text(sources, names, rows, self._token_bytes, int(self.data.val_max_bytes))
        # Every token is predicted, the first after the separator every later document follows too.
        text.first_token_context = self.tokenizer.convert_ids_to_tokens(self.separator_id)
        text.byte_count = byte_count_rule(self.tokenizer)
        self.val_text[split] = text
        self.val_sets[split] = PackedSequences(
            sources,
            text.rows,
            int(self.data.seq_len),
            self.separator_id,
            keep_tail=True,
            last_tokens=text.last_tokens,
            with_items=True,  # each token's held-out document: the items of validation's intervals
            start_token=self.separator_id,  # every byte scored (data/packing.py)
        )
        if self.val_sets[split].total_tokens < 2:  # no token with a next one to predict: no loss to measure
            raise ChipadaptError(
                f"data.val_max_bytes={self.data.val_max_bytes}: validation split {split!r} holds "
                f"{self.val_sets[split].total_tokens} token(s) of held-out text ({text.bytes} bytes); it needs at "
                "least 2 to measure anything: raise data.val_max_bytes"
            )

    def collate(self, items: list) -> dict:
        return collate_causal_lm(items, pad_id=self.pad_id)
