"""What every evaluation task shares (chipadapt.protocols.EvalTask): it needs a causal LM unless it
says otherwise, has no per-item records until `run` leaves them in `items`, and names the files it
reads (`inputs`, recorded by content in the run's manifest). Also the helpers tasks share: item ids
read from a file, and a window that fits the model."""

import logging
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from chipadapt.eval.items import content_id
from chipadapt.io.jsonl import FirstLines

log = logging.getLogger(__name__)


class TaskBase:
    needs_model: bool = True
    items: list[dict] | None = None
    # The name the task was selected by (`eval=[chip_mcq]`), where the runner sets it; one class serves
    # several tasks (mcq and chip_mcq, qa_rouge and rag_qa), so only the runner knows which this is.
    name: str | None = None

    def label(self, default: str) -> str:
        """The task's name for its progress bar: its selected name, else the usual task of its class."""
        return self.name or default

    def run(self, model, tokenizer) -> dict:
        raise NotImplementedError

    def inputs(self) -> list[tuple[str, str]]:
        """(key under the task's config, e.g. `path`, and path) of every data file or folder it reads."""
        return []


class ItemIds:
    """Each item's id: the one its record gives (a repeat is refused, naming both lines), else a hash
    of what defines the item. The same content twice without ids (MMLU repeats a few questions word
    for word) is numbered `<hash>#2`, `#3`: every record stays an item of its own, named the same in
    every run of the file, so two runs still pair item by item."""

    def __init__(self, path: str | Path, field: str = "id"):
        self.given = FirstLines(path, field)
        self.seen: Counter = Counter()

    def of(self, given, lineno: int, *content) -> str:
        if given is not None and given != "":
            return self.given.check(given, lineno)
        base = content_id(*content)
        self.seen[base] += 1
        return base if self.seen[base] == 1 else f"{base}#{self.seen[base]}"

    @property
    def repeats(self) -> int:
        """How many records repeated an earlier record's content (and were numbered)."""
        return sum(n - 1 for n in self.seen.values())


def item_bar(total: int, label: str):
    """A progress bar of a task's items (items/s), as scoring and generation show theirs: labelled with
    the task's name, and off where stderr is no terminal (a log file gets no bar lines)."""
    return tqdm(total=total, desc=label, unit="item", mininterval=2, disable=None)


def fit_to_context(model, max_length: int, task: str) -> int:
    """`max_length`, or the model's context where that is shorter: positions past it were never
    trained (lm-eval's HF backend takes the model's context as its max_length too). Said once per run."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and 0 < context < max_length:
        log.warning(
            "%s: max_length=%d is longer than the model's context (max_position_embeddings=%d); "
            "windows of %d tokens are scored",
            task,
            max_length,
            context,
            context,
        )
        return context
    return max_length
