"""SteerLM's attribute prediction model: the causal LM with a regression head.

`AutoModelForSequenceClassification` over the same backbone (Llama & co. pool the last non-padding
token), `num_labels` = number of attributes, trained with MSE on the 0-4 labels; attributes a
conversation lacks are masked out of the loss. It saves as an ordinary HF folder (id2label names the
attributes), which `annotate` and `bootstrap` load back.
"""

from pathlib import Path

import lightning as L
import torch
from transformers import AutoModelForSequenceClassification

from chipadapt.models.safe_load import safe_from_pretrained
from chipadapt.modules.attribute_figures import LOGGED, attribute_figures
from chipadapt.modules.optim import optimizers_for


def load_attribute_model(folder: str | Path, attributes: list[str] | None = None, pad_token_id: int | None = None):
    """A new head on a causal-LM folder (`attributes` given), or a trained attribute model folder."""
    kwargs = {}
    if attributes is not None:
        kwargs = {
            "num_labels": len(attributes),
            "problem_type": "regression",
            "id2label": dict(enumerate(attributes)),
            "label2id": {a: i for i, a in enumerate(attributes)},
        }
    # A trained attribute model must bring its head; a new one starts from a causal LM's backbone.
    model = safe_from_pretrained(
        AutoModelForSequenceClassification,
        Path(folder),
        "attribute_model",
        complete=attributes is None,
        dtype=torch.float32,
        **kwargs,
    )
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id  # the head reads the last token before padding
    return model


class AttributeModule(L.LightningModule):
    def __init__(
        self, model_folder: str | Path, attributes: list[str], pad_token_id: int, optim, label_means: list[float]
    ):
        super().__init__()
        self.model = load_attribute_model(model_folder, attributes, pad_token_id)
        self.model.train()
        self.attributes, self.optim = list(attributes), optim
        # The constant baseline predicts each attribute's training mean.
        self.register_buffer("label_means", torch.tensor(label_means, dtype=torch.float32), persistent=False)
        self._reset_val()
        self.val_results: dict = {}
        self.last_val_step: int | None = None

    def _reset_val(self):
        self._preds, self._labels, self._mask, self._groups = [], [], [], []

    def _loss(self, batch):
        pred = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        mask = batch["label_mask"]
        loss = ((pred - batch["labels"]) ** 2 * mask).sum() / mask.sum().clamp(min=1)
        return loss, pred

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        _, pred = self._loss(batch)
        self._preds.append(pred.detach().cpu())
        self._labels.append(batch["labels"].cpu())
        self._mask.append(batch["label_mask"].cpu())
        if "group" in batch:  # which held-out conversations belong together (steerlm/attribute_data.py)
            self._groups.append(batch["group"].cpu())

    def on_validation_epoch_end(self):
        if not self._preds:
            return
        preds, labels, mask = torch.cat(self._preds), torch.cat(self._labels), torch.cat(self._mask).bool()
        groups = torch.cat(self._groups) if len(self._groups) == len(self._preds) else None
        results = {}
        for i, name in enumerate(self.attributes):
            m = mask[:, i]
            if m.sum() < 3:
                continue
            results[name] = attribute_figures(
                preds[m, i].tolist(),
                labels[m, i].tolist(),
                float(self.label_means[i]),
                groups=None if groups is None else groups[m].tolist(),
            )
            for key in LOGGED:
                if results[name].get(key) is not None:
                    self.log(f"val/{name}/{key}", float(results[name][key]))
        self.val_results = results
        self.last_val_step = self.global_step
        self._reset_val()

    def configure_optimizers(self):
        return optimizers_for(self.model, self.optim, self.trainer)
