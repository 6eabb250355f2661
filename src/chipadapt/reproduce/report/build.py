"""Assemble REPORT.md: the headline table of findings, one section per stage, the provenance of every step.

Each section reads only its steps' folders and returns Markdown plus the facts the headline table
judges; a step that is missing (skipped by the variant, failed, not yet run) leaves a note, not a
gap. REPORT.md and headline.md (the table alone, for README.md) are written atomically.
"""

import datetime as dt
import json
import os
import platform
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.cache_root import cache_root
from chipadapt.io.portable_paths import PortablePaths
from chipadapt.manifest import git_state
from chipadapt.reproduce.report import (
    alignment_section,
    dapt_section,
    merge_section,
    models_section,
    retrieval_section,
    tokenizer_section,
)
from chipadapt.reproduce.report.archive import archive_records
from chipadapt.reproduce.report.context import Context, get, table
from chipadapt.reproduce.report.general_model import parameter_count, size_text
from chipadapt.reproduce.report.power import MIN_EXACT
from chipadapt.reproduce.report.verdicts import headline
from chipadapt.reproduce.step_process import ROOT
from chipadapt.reproduce.steps import Step

# Which corpus_ppl evaluation belongs to which DAPT run (the learning-rate sweep); the chip model's
# DAPT (`chip_dapt`) is evaluated by eval_dapt.
DAPT_EVALS = {
    "dapt_lr5e-6": "eval_dapt_lr5e-6",
    "dapt_lr5e-5": "eval_dapt_lr5e-5",
    "dapt_lr3e-4": "eval_dapt_lr3e-4",
    "dapt_lr1e-3": "eval_dapt_lr1e-3",
    "dapt_aug_lr5e-5": "eval_dapt_aug_lr5e-5",
    "dapt_aug_zero_lr5e-5": "eval_dapt_aug_zero_lr5e-5",
}
# The base-tokenizer run each augmented arm pairs with, evaluated on the same text (conf/reproduce.yaml).
SAME_TEXT_EVALS = {5.0e-5: "eval_dapt_lr5e-5_same_text"}


def out_override(out: Path) -> str:
    """The `out=` of a rebuild, named portably: inside the repository relative to it, in the cache as
    Hydra's `${paths.cache_dir}/...` (the same folder on any machine), elsewhere as $REPRODUCE_OUT."""
    out, cache = Path(out).resolve(), cache_root().resolve()
    if out.is_relative_to(cache):  # first, as PortablePaths names it
        rest = out.relative_to(cache).as_posix()
        return " 'out=${paths.cache_dir}" + ("" if rest == "." else f"/{rest}") + "'"
    if out.is_relative_to(ROOT.resolve()):
        return f" out={out.relative_to(ROOT.resolve()).as_posix()}"
    return " out=$REPRODUCE_OUT"


def step_commits(ctx: Context, name: str) -> str | None:
    """The commit(s) a step's code was at: its manifest's, or for a sweep (-m), whose manifests are its
    jobs' (<step>/<job>/manifest.json), each distinct one of its jobs'."""
    folder = ctx.folder(name)
    own = folder / "manifest.json"
    manifests = [own] if own.is_file() else sorted(folder.glob("*/manifest.json"))
    commits = []
    for path in manifests:
        commit = (json.loads(path.read_text()).get("git") or {}).get("commit")
        if commit and commit[:10] not in commits:
            commits.append(commit[:10])
    return ", ".join(commits) or None


def provenance(ctx: Context) -> str:
    rows = []
    for name, step in ctx.steps.items():
        record = ctx.ledger.get(name, {})
        commit = step_commits(ctx, name)
        seconds = record.get("seconds")
        rows.append(
            [
                ctx.link(name),
                step.section,
                record.get("status", "not run"),
                f"{seconds / 60:.1f}" if seconds else "–",
                commit or "–",
                f"`python {' '.join(record.get('command') or step.command(ctx.out))}`".replace("|", "\\|"),
            ]
        )
    return table(["step", "section", "status", "minutes", "commit", "command"], rows)


def wall_minutes(ctx: Context) -> float:
    return sum((ctx.ledger.get(n, {}).get("seconds") or 0) for n in ctx.steps) / 60


def build_report(cfg: DictConfig, steps: list[Step], out: Path, report_dir: Path, final: Path | None = None) -> Path:
    """Write REPORT.md, its plots and runs/ into `report_dir`: the staging folder that becomes `final`."""
    ledger = json.loads((out / "steps.json").read_text()) if (out / "steps.json").is_file() else {}
    shared = Path(cfg.paths.shared_data)
    ctx = Context(
        out=out,
        report_dir=report_dir,
        steps={s.name: s for s in steps},
        ledger=ledger,
        base_model=Path(cfg.base_model),
        shared_data=shared if shared.is_absolute() else ROOT / shared,
        model_name=OmegaConf.select(cfg, "model.name") or "",  # a config of the records alone may lack it
        model_size=size_text(parameter_count(Path(cfg.base_model))),
    )
    chip_dapt = cfg.chip_dapt
    eval_of = {**DAPT_EVALS, chip_dapt: "eval_dapt"}
    parts, facts = [], {}
    for key, title, build in [
        ("tokenizer", "1. Domain-adapted tokenizer", lambda: tokenizer_section.section(ctx)),
        (
            "dapt",
            "2. Domain-adaptive pretraining and the learning-rate ablation",
            lambda: dapt_section.section(ctx, eval_of, chip_dapt, SAME_TEXT_EVALS),
        ),
        ("alignment", "3. SFT, EDA script generation and SteerLM", lambda: alignment_section.section(ctx)),
        ("merge", "4. ChipAlign and the other merges", lambda: merge_section.section(ctx)),
        ("retrieval", "5. Retriever and RAG", lambda: retrieval_section.section(ctx)),
        ("models", "6. All models on one suite, with MMLU", lambda: models_section.section(ctx)),
    ]:
        text, found = build()
        parts.append(f"## {title}\n\n{text}\n")
        facts[key] = found
    base = ctx.results("eval_base")
    facts["n_ifeval"] = get(base, "ifeval.prompts") or 0
    facts["n_mmlu"] = get(base, "mcq.questions") or 0
    facts["model_size"] = ctx.model_size
    rows = headline(facts)
    head = table(["finding", "paper", "here", "verdict", "why it may differ"], rows)
    done = sum(ctx.has(n) for n in ctx.steps)
    git = git_state(ignore=[report_dir, final or report_dir])
    intro = [
        f"# Small-scale reproduction of ChipNeMo and ChipAlign — variant `{cfg.variant.name}`",
        "",
        # The absolute folder: PortablePaths writes it $CHIPADAPT_CACHE/..., repo-relative or $REPRODUCE_OUT.
        f"Built {dt.datetime.now():%Y-%m-%d %H:%M} from `{Path(out).resolve()}` "
        f"({done}/{len(ctx.steps)} steps completed, {wall_minutes(ctx):.0f} minutes of step wall time on "
        f"{os.cpu_count()} CPU cores, {platform.machine()}); code at commit {(git['commit'] or '?')[:10]}"
        f"{' with uncommitted changes' if git['dirty'] else ''}. General model: {ctx.model_name}"
        f"{f' ({ctx.model_size} parameters)' if ctx.model_size else ''}; chip model: "
        f"`{chip_dapt}` + SFT. Every figure links to the record of the step it was read from "
        "(`runs/<step>/`: manifest.json or results.json and .hydra/overrides.yaml, which say exactly what ran); "
        "`runs/steps.json` has each step's command and wall time. Rebuild with "
        f"`python reproduce.py variant={cfg.variant.name}{out_override(out)} only=[report]`.",
        "",
        "## Findings",
        "",
        head,
        "",
        "Each verdict comes from a paired test wherever two models are scored on the same items (McNemar's test "
        "with Tango's score interval for pass/fail scores, the paired permutation test for F1, ROUGE-L and bits "
        "per byte; "
        "95% intervals): "
        "*reproduces* when the interval of the difference excludes 0 in the paper's direction, *contradicts* when "
        "it excludes 0 the other way, and *not resolved at this size* otherwise, with the number of items (for "
        "held-out text, documents and tokens) at which a difference as large as the one seen would resolve "
        "about half the time (twice that for 80% power); a "
        f"paired test over fewer than {MIN_EXACT} items resolves nothing. Held-out domain bpb is compared on "
        "every held-out domain document pooled (corpus_ppl's domain_all.bpb). "
        "*Not measured*: no per-item records to pair, or two runs' records that are not the same items (other "
        "questions under the same ids, other limits on the text scored: the row says why), never paired "
        "(the row says what was measured instead). "
        f"Sizes here: {facts['n_ifeval'] or '–'} IFEval prompts, {facts['n_mmlu'] or '–'} MMLU questions.",
        "",
    ]
    text = "\n".join(intro + parts + ["## Provenance", "", provenance(ctx), ""])
    portable = PortablePaths(out)  # no machine's absolute paths in what gets committed
    archive_records(out, [n for n in ctx.steps if n in ledger], report_dir / "runs", portable)
    write_text_atomic(report_dir / "headline.md", portable(head) + "\n")
    return write_text_atomic(report_dir / "REPORT.md", portable(text))
