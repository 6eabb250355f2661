"""Bits per byte of the starting model, before any training: the base model with its own tokenizer
against the resized model with the augmented one, once per output-row rule (init_rows.py).

Bits per byte do not depend on the tokenizer, so the difference is what a rule costs (or gains)
before DAPT has trained a single new row. Scored with the perplexity eval on the same text for
every model: each domain source's held-out documents (the ones DAPT validates on; the first
`domain_chars` characters of them, null = all) and the first `general_chars` characters of the
report's general text. A token budget would not do: the augmented tokenizer covers more text per
token, so its budget would reach further into the text.

The text is scored in blocks of about `block_chars` characters (cut at line ends), each an item, and
every model is paired with the base tokenizer block by block: the domain (and general) difference
gets a 95% interval from a paired permutation test over blocks (a block's two scores swapped), within
each source (the unweighted mean over sources, as `domain_minus_base`). Blocks, not documents, because
some sources hold out one or two long documents (picorv32: one of 30,000 characters), whose own interval
would be degenerate. Neighbouring blocks
are not independent, so the interval is somewhat narrow; `domain_minus_base_stderr`, over the
sources, says how much the cost differs from one source to the next.
"""

import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.sources import read_source
from chipadapt.errors import ChipadaptError
from chipadapt.eval.paired import paired_domain_mean
from chipadapt.eval.tasks.perplexity import PerplexityTask
from chipadapt.tokenizer.held_out import split_documents


def text_blocks(text: str, block_chars: int) -> list[str]:
    """`text` cut into consecutive blocks of at most `block_chars` characters, at line ends where a
    line fits (a longer line is cut inside); joined, the blocks are `text` again."""
    blocks, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > block_chars:
            if current:
                blocks.append(current)
                current = ""
            blocks.append(line[:block_chars])
            line = line[block_chars:]
        if len(current) + len(line) > block_chars:
            blocks.append(current)
            current = ""
        current += line
    if current:
        blocks.append(current)
    return blocks


class StartingBpb:
    def __init__(
        self,
        outputs: list[str],
        held_out: float | None,
        domain_chars: int | None,
        general_chars: int,
        block_chars: int,
        max_length: int,
        warmup_steps: list[int],
    ):
        if block_chars < 1 or general_chars < 1 or (domain_chars is not None and domain_chars < 1):
            raise ChipadaptError(
                f"tokenizer.adapt.starting_bpb: block_chars={block_chars}, general_chars={general_chars} and "
                f"domain_chars={domain_chars} must be >= 1 (domain_chars: null = all held-out text)"
            )
        self.outputs = list(outputs)
        # With `init.warmup`: also measured after these warm-up steps (the warm-up's rate is
        # constant, so step N of the run is what an N-step warm-up gives), and after the last.
        self.warmup_steps = sorted(int(s) for s in warmup_steps)
        self.held_out, self.domain_chars, self.general_chars = held_out, domain_chars, general_chars
        self.block_chars, self.max_length = block_chars, max_length

    def check_held_out(self) -> None:
        """Called by the tokenizer build once it knows its stage builds one: a stage that builds none
        holds out nothing either, and its error is the one that says what is wrong."""
        if self.domain_chars is None and not self.held_out:
            raise ChipadaptError(
                "tokenizer.adapt.starting_bpb.domain_chars: null scores all held-out text, but nothing is held out "
                "(data.val_fraction is unset): give a number of characters"
            )

    def _excerpt(self, spec: SourceSpec, key: str, fraction: float | None, max_chars: int | None) -> list[dict]:
        docs = read_source(spec, key)
        if fraction:  # DAPT's held-out documents (none of a source with val_split: null)
            docs = split_documents(docs, spec, fraction)[1]
        out, left = [], max_chars if max_chars is not None else sum(len(d.text) for d in docs)
        for i, doc in enumerate(docs):
            if left <= 0:
                break
            text = doc.text[:left]
            left -= len(text)
            blocks = text_blocks(text, self.block_chars)
            # The document's position too: two records of a source may share a path (README.md).
            out += [{"id": f"{i}:{doc.doc_id}#{k}", "text": block} for k, block in enumerate(blocks)]
        return out

    def task(self, domain: dict[str, SourceSpec], general: dict[str, SourceSpec], workdir: Path) -> "Ruler":
        """The perplexity task over the excerpts (written as JSONL under `workdir`), as a `Ruler`."""
        splits = {}
        for kind, group, fraction, chars in (
            ("domain", domain, self.held_out, self.domain_chars),
            ("general", general, None, self.general_chars),
        ):
            for name, spec in group.items():
                rows = self._excerpt(spec, f"tokenizer.adapt.{name}", fraction, chars)
                if not rows:
                    continue  # a source too small to hold a document out
                path = workdir / f"{kind}-{name}.jsonl"
                path.write_text("".join(json.dumps(r) + "\n" for r in rows))
                splits[f"{kind}/{name}"] = {"path": str(path), "general": kind == "general"}
        return Ruler(PerplexityTask(OmegaConf.create(splits), self.max_length, None, None, None, None))

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


class Ruler:
    """The starting-bpb text as one perplexity task. The first model measured is the base tokenizer's;
    every later one is paired with it block by block (`domain_minus_base_ci`, `domain_blocks`, and the
    same for general text)."""

    def __init__(self, task: PerplexityTask):
        self.task = task
        self.base: tuple[dict, dict] | None = None

    def measure(self, model, tokenizer) -> dict:
        results = self.task.run(model, tokenizer)
        items = {item["id"]: item for item in self.task.items}
        if self.base is None:
            self.base = (StartingBpb.summary(results), items)
            return self.base[0]
        out = StartingBpb.summary(results, self.base[0])
        for kind in ("domain", "general"):
            metrics = [f"{n}.bpb" for n in out["splits"] if n.startswith(kind + "/")]
            paired = paired_domain_mean(self.base[1], items, metrics) if metrics else None
            if paired is not None:
                out[f"{kind}_minus_base_ci"] = [round(paired.ci[0], 4), round(paired.ci[1], 4)]
                out[f"{kind}_blocks"] = paired.n
        # A block one tokenizer scores no token of (under two tokens) is left out of the pairs.
        unpaired = len(self.base[1].keys() ^ items.keys())
        if unpaired:
            out["blocks_unpaired"] = unpaired
        return out
