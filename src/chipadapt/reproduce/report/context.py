"""What every report section reads: the steps, their folders and records, and where figures go."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from chipadapt.io.atomic import atomic_file  # noqa: E402
from chipadapt.reproduce.steps import Step  # noqa: E402


@dataclass
class Context:
    out: Path  # the reproduction folder: one subfolder per step
    report_dir: Path  # REPORT.md and its PNGs
    steps: dict[str, Step]
    ledger: dict[str, dict]  # steps.json
    base_model: Path
    shared_data: Path
    figures: list[str] = field(default_factory=list)
    model_name: str = ""  # the config's `model.name`
    model_size: str | None = None  # general_model.size_text of its weights: 135M; None unread

    def has(self, name: str) -> bool:
        """The step is configured in this variant and completed."""
        return name in self.steps and self.ledger.get(name, {}).get("status") == "completed"

    def folder(self, name: str) -> Path:
        return self.out / name

    def link(self, name: str) -> str:
        """A Markdown link to the step's record beside the report (runs/<step>: its manifest, results,
        Hydra overrides; archive.py copies them), so the report travels without the weights."""
        return f"[{name}](runs/{name})"

    def link_folder(self, folder: Path, text: str) -> str:
        return f"[{text}](runs/{folder.relative_to(self.out).as_posix()})"

    def label(self, name: str) -> str:
        return self.steps[name].label if name in self.steps else name

    def read_json(self, name: str, file: str) -> dict | None:
        path = self.folder(name) / file
        return json.loads(path.read_text()) if path.is_file() else None

    def results(self, name: str) -> dict | None:
        """results.json of an evaluate.py or merge.py step, when it completed."""
        return self.read_json(name, "results.json") if self.has(name) else None

    def save_figure(self, fig, filename: str) -> str:
        """PNG beside REPORT.md, written to a temporary file and renamed; returns the Markdown image."""
        try:
            with atomic_file(self.report_dir / filename) as tmp:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        finally:
            plt.close(fig)
        self.figures.append(filename)
        return f"![{filename}]({filename})"


def get(results: dict | None, dotted: str):
    """results['task']['metric'] for 'task.metric' (metric names may hold dots); None when absent."""
    if not results:
        return None
    task, _, metric = dotted.partition(".")
    return (results.get(task) or {}).get(metric)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value) -> str:
    return "–" if value is None else f"{value:+.1f}%"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def missing(what: str, names: list[str]) -> str:
    return f"_{what}: not in this run (steps {', '.join(names)} not completed or skipped by the variant)._"
