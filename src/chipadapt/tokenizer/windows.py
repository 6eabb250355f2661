"""Token windows from the training documents, for what trains or fits the new rows before DAPT
(warmup.py, output_fit.py).

Windows of `seq_len` tokens are drawn at random from each domain source's training documents (never
the held-out ones the starting bits/byte are measured on), the source chosen uniformly per window as
the starting bits/byte average sources; a `general_fraction` of the windows come from the training
sources marked `general: true`, where the new tokens are almost never the target, which teaches the
new output rows to stay low on general text.
"""

import logging

import torch

from chipadapt.data.holdout import held_out_mask, text_digest
from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)


def token_stream(backend, texts: list[str], separator: int | None) -> torch.Tensor:
    """The documents encoded and joined (separated by `separator`, usually end-of-text)."""
    ids: list[int] = []
    for encoding in backend.encode_batch(texts, add_special_tokens=False):
        ids += encoding.ids + ([separator] if separator is not None else [])
    return torch.tensor(ids, dtype=torch.long)


def training_texts(
    docs_by_source: dict[str, list],
    held_out: float | None,
    also: dict[str, list] | None = None,
    validation: list | None = None,
) -> dict[str, list[str]]:
    """Each source's documents less the ones held out (by the hash `data.val_fraction` uses) and less
    any whose text is a held-out document's under another id, of these sources or of `also`'s, or is one
    of `validation` (the report's general text, `data.val_sources`, every document of it held out): the
    starting bits/byte are measured on the held-out domain text and on that general text (data/holdout.py)."""
    fraction = float(held_out or 0.0)
    sources = {(0, name): docs for name, docs in docs_by_source.items()} | {(1, n): d for n, d in (also or {}).items()}
    masks = {key: held_out_mask([d.doc_id for d in docs], fraction) for key, docs in sources.items()}
    held = {text_digest(d.text) for key, docs in sources.items() for d, m in zip(docs, masks[key]) if m}
    held |= {text_digest(d.text) for d in validation or []}
    out = {}
    for name, docs in docs_by_source.items():
        texts = [d.text for d, m in zip(docs, masks[(0, name)]) if not m and text_digest(d.text) not in held]
        if texts:
            out[name] = texts
    return out


class TrainingWindows:
    """Draws windows of `seq_len` tokens (`key` names the config block in errors and warnings)."""

    def __init__(
        self,
        backend,
        domain: dict[str, list],
        general: dict[str, list],
        separator: int | None,
        seq_len: int,
        general_fraction: float,
        held_out: float | None,
        key: str,
        validation: list | None = None,
    ):
        """`validation`: the report's general documents, whose copies are never drawn (training_texts)."""
        self.seq_len = seq_len
        domain_texts = training_texts(domain, held_out, general, validation)
        general_texts = training_texts(general, held_out, domain, validation)
        self.domain = self._streams(backend, domain_texts, separator, "domain", key)
        self.general = self._streams(backend, general_texts, separator, "general", key)
        if not self.domain:
            raise ChipadaptError(
                f"{key}: no domain source has a training document of {seq_len + 1} tokens or more (lower seq_len)"
            )
        self.general_fraction = general_fraction
        if general_fraction and not self.general:
            log.warning("%s: no training source is marked general: true; using domain text only", key)
            self.general_fraction = 0.0

    def _streams(self, backend, texts: dict[str, list[str]], separator: int | None, kind: str, key: str) -> dict:
        streams = {name: token_stream(backend, t, separator) for name, t in texts.items()}
        short = [name for name, s in streams.items() if len(s) <= self.seq_len]
        if short:
            log.warning("%s: %s source(s) %s shorter than one window: not used", key, kind, ", ".join(short))
        return {name: s for name, s in streams.items() if len(s) > self.seq_len}

    def tokens(self) -> dict[str, int]:
        return {
            "domain": int(sum(len(s) for s in self.domain.values())),
            "general": int(sum(len(s) for s in self.general.values())),
        }

    def batch(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        """`rows` windows, [rows, seq_len]."""
        out = []
        for _ in range(rows):
            general = self.general_fraction and float(torch.rand((), generator=generator)) < self.general_fraction
            pool = self.general if general else self.domain
            names = list(pool)
            stream = pool[names[int(torch.randint(len(names), (), generator=generator))]]
            begin = int(torch.randint(len(stream) - self.seq_len + 1, (), generator=generator))
            out.append(stream[begin : begin + self.seq_len])
        return torch.stack(out)
