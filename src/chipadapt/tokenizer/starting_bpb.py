"""Bits per byte of the starting model, before any training: the base model with its own tokenizer
against the resized model with the augmented one, once per output-row rule (init_rows.py).

Bits per byte do not depend on the tokenizer, so the difference is what a rule costs (or gains)
before DAPT has trained a single new row. Scored with the perplexity eval on each domain source's
held-out documents (the ones DAPT validates on) and on the report's general text.
"""

import dataclasses
import statistics

from omegaconf import OmegaConf

from chipadapt.data.sources import SourceSpec
from chipadapt.eval.tasks.perplexity import PerplexityTask


class StartingBpb:
    def __init__(self, outputs: list[str], held_out: float | None, max_tokens: int, max_length: int):
        self.outputs = list(outputs)
        self.held_out, self.max_tokens, self.max_length = held_out, max_tokens, max_length

    def task(self, domain: dict[str, SourceSpec], general: dict[str, SourceSpec]) -> PerplexityTask:
        def split(spec: SourceSpec, is_general: bool, held_out) -> dict:
            values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}
            return {**values, "general": is_general, "held_out": held_out}

        splits = {f"domain/{n}": split(s, False, self.held_out) for n, s in domain.items()}
        splits |= {f"general/{n}": split(s, True, None) for n, s in general.items()}
        return PerplexityTask(OmegaConf.create(splits), self.max_length, None, self.max_tokens)

    @staticmethod
    def summary(results: dict, base: dict | None = None) -> dict:
        """Mean bpb over the domain splits and over the general ones; against `base`, the paired
        difference per split with its standard error over splits."""
        out = {"splits": {k[: -len(".bpb")]: round(v, 4) for k, v in results.items() if k.endswith(".bpb") and "/" in k}}
        out["tokens"] = sum(v for k, v in results.items() if k.endswith(".tokens"))
        for kind in ("domain", "general"):
            names = [n for n in out["splits"] if n.startswith(kind + "/")]
            if not names:
                continue
            out[f"{kind}_bpb"] = round(statistics.fmean(out["splits"][n] for n in names), 4)
            if base is not None:
                diffs = [out["splits"][n] - base["splits"][n] for n in names]
                out[f"{kind}_minus_base"] = round(statistics.fmean(diffs), 4)
                out[f"{kind}_minus_base_stderr"] = round(statistics.stdev(diffs) / len(diffs) ** 0.5, 4) if len(diffs) > 1 else None
        return out
