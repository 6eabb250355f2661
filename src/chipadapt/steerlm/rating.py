"""Rate conversations with a trained attribute model (annotation and bootstrapping)."""

import logging

import torch

from chipadapt.data.conversations import Conversation
from chipadapt.errors import ChipadaptError
from chipadapt.models.hf_folder import load_tokenizer
from chipadapt.models.locate import locate_model
from chipadapt.modules.attribute_model import load_attribute_model
from chipadapt.steerlm.attribute_data import collate_ratings, encode_for_rating
from chipadapt.steerlm.attribute_record import TRAIN_LABELS_KEY, head_names, untrained_heads

log = logging.getLogger(__name__)


class AttributeRater:
    def __init__(self, folder: str, template_factory, max_tokens: int, batch_size: int):
        folder = locate_model(folder, "attribute_model")
        if not (folder / "config.json").is_file():
            raise ChipadaptError(
                f"attribute_model: {folder} is not a model folder (train one with stage=attribute_model)"
            )
        self.folder = folder
        self.model = load_attribute_model(folder).eval()
        if torch.cuda.is_available():
            self.model.cuda()
        self.tokenizer = load_tokenizer(folder)
        self.template = template_factory(tokenizer=self.tokenizer)
        self.attributes = head_names(self.model.config)
        untrained = untrained_heads(self.model.config)
        # Heads no training label reached output their initialisation: null, not a made-up rating.
        self.unrated = untrained or []
        if untrained:
            log.warning(
                "%s had no training labels for %s (config.json %s): written as null, not rated",
                folder,
                ", ".join(untrained),
                TRAIN_LABELS_KEY,
            )
        elif untrained is None:
            log.warning(
                "%s/config.json records no %s (trained before they were recorded): every head is used as "
                "trained, also one whose attribute had no training label; a retrained model leaves those out",
                folder,
                TRAIN_LABELS_KEY,
            )
        self.rated = [a for a in self.attributes if a not in self.unrated]
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.pad_id = self.model.config.pad_token_id

    def rate(self, conversations: list[list[dict]], journal=None) -> list[dict[str, float | None]]:
        """{attribute: rating on 0-4} per conversation, None for an attribute the model never learned.
        With a `journal` (steerlm/progress_journal.py), ratings it holds from an interrupted run are
        reused and each new one is appended as its batch completes."""
        if journal is None:
            return self._rate(conversations)
        slots, out = [], []
        for messages in conversations:
            slot, found, rating = journal.ask(["rate", self.rated, messages])
            slots.append(slot)
            out.append(rating if found else None)
        todo = [i for i, rating in enumerate(out) if rating is None]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for i, rating in zip(chunk, self._rate([conversations[i] for i in chunk])):
                out[i] = rating
                journal.record(slots[i], rating)
        return out

    @torch.no_grad()
    def _rate(self, conversations: list[list[dict]]) -> list[dict[str, float | None]]:
        out = []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            items = [
                (
                    encode_for_rating(self.tokenizer, self.template, Conversation("", m), self.max_tokens),
                    [0.0] * len(self.attributes),
                    [1.0] * len(self.attributes),
                )
                for m in chunk
            ]
            batch = collate_ratings(items, self.pad_id, len(self.attributes))
            logits = self.model(
                input_ids=batch["input_ids"].to(self.model.device),
                attention_mask=batch["attention_mask"].to(self.model.device),
            ).logits.float()
            for row in logits.clamp(0, 4).cpu().tolist():
                out.append({a: None if a in self.unrated else round(v, 3) for a, v in zip(self.attributes, row)})
        return out
