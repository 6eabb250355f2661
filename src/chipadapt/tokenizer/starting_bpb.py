"""Bits per byte of the starting model, before any training: the base model with its own tokenizer
against the resized model with the augmented one, once per output-row rule (init_rows.py).

Bits per byte do not depend on the tokenizer, so the difference is what a rule costs (or gains)
before DAPT has trained a single new row. Scored with the perplexity eval on the same text for
every model: the first `max_chars` characters of each domain source's held-out documents (the
ones DAPT validates on) and of the report's general text. A token budget would not do: the
augmented tokenizer covers more text per token, so its budget would reach further into the text.
"""

import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from chipadapt.data.holdout import held_out_mask
from chipadapt.data.sources import SourceSpec, read_source
from chipadapt.eval.tasks.perplexity import PerplexityTask


class StartingBpb:
    def __init__(
        self, outputs: list[str], held_out: float | None, max_chars: int, max_length: int, warmup_steps: list[int]
    ):
        self.outputs = list(outputs)
        # With `init.warmup`: also measured after these warm-up steps (the warm-up's rate is
        # constant, so step N of the run is what an N-step warm-up gives), and after the last.
        self.warmup_steps = sorted(int(s) for s in warmup_steps)
        self.held_out, self.max_chars, self.max_length = held_out, max_chars, max_length

    def _excerpt(self, spec: SourceSpec, key: str, fraction: float | None) -> list[dict]:
        docs = read_source(spec, key)
        if fraction:
            docs = [d for d, keep in zip(docs, held_out_mask([d.doc_id for d in docs], float(fraction))) if keep]
        out, left = [], self.max_chars
        for doc in docs:
            if left <= 0:
                break
            out.append({"text": doc.text[:left]})
            left -= len(out[-1]["text"])
        return out

    def task(self, domain: dict[str, SourceSpec], general: dict[str, SourceSpec], workdir: Path) -> PerplexityTask:
        """The perplexity task over the excerpts, written as JSONL under `workdir`."""
        splits = {}
        for kind, group, fraction in (("domain", domain, self.held_out), ("general", general, None)):
            for name, spec in group.items():
                rows = self._excerpt(spec, f"tokenizer.adapt.{name}", fraction)
                if not rows:
                    continue  # a source too small to hold a document out
                path = workdir / f"{kind}-{name}.jsonl"
                path.write_text("".join(json.dumps(r) + "\n" for r in rows))
                splits[f"{kind}/{name}"] = {"path": str(path), "general": kind == "general"}
        return PerplexityTask(OmegaConf.create(splits), self.max_length, None, None, None, None)

    @staticmethod
    def summary(results: dict, base: dict | None = None) -> dict:
        """Mean bpb over the domain splits and over the general ones; against `base`, the paired
        difference per split with its standard error over splits."""
        out = {
            "splits": {k[: -len(".bpb")]: round(v, 4) for k, v in results.items() if k.endswith(".bpb") and "/" in k}
        }
        out["tokens"] = sum(v for k, v in results.items() if k.endswith(".tokens") and "/" in k)
        for kind in ("domain", "general"):
            names = [n for n in out["splits"] if n.startswith(kind + "/")]
            if not names:
                continue
            out[f"{kind}_bpb"] = round(statistics.fmean(out["splits"][n] for n in names), 4)
            if base is not None:
                diffs = [out["splits"][n] - base["splits"][n] for n in names]
                out[f"{kind}_minus_base"] = round(statistics.fmean(diffs), 4)
                out[f"{kind}_minus_base_stderr"] = (
                    round(statistics.stdev(diffs) / len(diffs) ** 0.5, 4) if len(diffs) > 1 else None
                )
        return out
