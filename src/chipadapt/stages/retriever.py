"""`stage=retriever`: passages -> synthetic training data -> contrastive training -> `DIR/model/`.

Each step's output stays in the run folder and a rerun with the same `hydra.run.dir` reuses it while it
was built from the same settings and inputs (`<file>.built_from.json` beside it; io/built_from.py), and
builds it again otherwise: `passages.jsonl`, `synthetic/{train.jsonl,report.json}`; `checkpoints/last.ckpt`
is resumed under the checks of every stage (stages/resume_settings.py). A file found there without a record
(built by a chipadapt that kept none) is checked before anything is written (`finished_before`): one the
folder's earlier retriever run built is built again with overwrite=true, the earlier one kept beside it as
`<file>.unrecorded` (a synthetic training set took an LLM hours, and may have been edited by hand), anything
else is refused.

Every process of a distributed run (torchrun, srun) runs this before the Trainer makes its process
group, and all of them write into the one run folder: each step is built under a build lock on its
file (io/lock.py), so one process builds and records it while the others wait and then reuse that
file and record, as a rerun would. Built twice, an LLM's nondeterministic questions gave the ranks
different training data and left one rank's record beside another rank's file.
"""

import json
import logging
import os
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import write_items
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.built_from import record_path, reusable, write_built
from chipadapt.io.lock import cache_entry_lock, is_secondary_rank
from chipadapt.loggers.final_figures import log_final_figures
from chipadapt.manifest import RunManifest
from chipadapt.report import console
from chipadapt.retrieval.build import load_passages_report, passages_named
from chipadapt.retrieval.built_inputs import passages_inputs
from chipadapt.retrieval.compare_encoders import (
    QuerySet,
    compare_encoders,
    comparison_tables,
    eval_question_set,
    with_known_passages,
)
from chipadapt.retrieval.passages import Passage, read_passages
from chipadapt.retrieval.queries import Query, gold_without_evidence, write_queries
from chipadapt.retrieval.tevatron_data import read_tevatron
from chipadapt.retrieval.training_data import (
    eval_questions,
    heldout_queries,
    plain,
    split_groups,
    synthesize_training_file,
    without_heldout_questions,
)
from chipadapt.run_metrics import evaluation_metrics
from chipadapt.stages.common import begin, publish_if_finite, train_module
from chipadapt.stages.resume_decision import resume_checkpoint

log = logging.getLogger(__name__)


# What the stage builds in its run folder: (file, the setting that, null, has the stage build it, how to
# keep a file found there without a record of what it was built from).
BUILT_FILES = (
    ("passages.jsonl", "retriever.passages", "use it as given with retriever.passages=FILE"),
    ("synthetic/train.jsonl", "retriever.train_file", "train on it as given with retriever.train_file=FILE"),
)


def finished_before(cfg: DictConfig, out: Path) -> None:
    """train.py's hook, run before anything is written: no retriever run passes as completed (one is trained
    again only with overwrite=true, pipeline.RECORDED_STAGES), but the files the stage would build that the
    folder holds without a record of what they were built from are checked here, while its manifest is
    still the earlier run's: refused later, the folder's manifest would already say `failed`."""
    if resume_checkpoint(cfg, out, check=False):
        return None  # its checkpoint trained on them: adopted as they are (io/built_from.reusable)
    for name, key, advice in BUILT_FILES:
        target = out / name
        if _selected(cfg, key) or not target.exists() or record_path(target).is_file():
            continue
        if not _built_by_earlier_run(out, key):
            raise ChipadaptError(
                f"{target}: no record of what it was built from ({record_path(target).name}) and no retriever run "
                f"recorded in {out} built it, so it is neither reused nor replaced; move it away to have it "
                f"built again, or {advice}"
            )
        if not cfg.overwrite:
            raise ChipadaptError(
                f"{target}: built by the earlier retriever run in this folder, which kept no record of what it "
                f"was built from (an earlier chipadapt); overwrite=true builds it again, or {advice}"
            )
    return None


def _selected(cfg: DictConfig, key: str):
    section, name = key.split(".")
    return cfg[section][name]


def _built_by_earlier_run(out: Path, key: str) -> bool:
    """Whether the run `out/manifest.json` records (this attempt's manifest is not written yet) was a
    retriever run that built the file `key` names when null: a file of the user's own, or one another
    stage's run left, is not taken for the stage's own."""
    try:
        record = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        config = record["config"]
        section, name = key.split(".")
        return record["kind"] == "train" and config["stage"]["name"] == "retriever" and config[section][name] is None
    except (OSError, ValueError, KeyError, TypeError):
        return False


def moved_aside_by_overwrite(cfg: DictConfig, target: Path, resumed: str | None) -> bool:
    """`target` is the earlier run's file without a record, which `finished_before` let overwrite=true build
    again (it refused every other such file before this attempt started): moved aside, never deleted, to
    `<file>.unrecorded` (`.unrecorded.2`, ... where that name is taken), which the log line names."""
    if not (cfg.overwrite and not resumed and target.is_file() and not record_path(target).is_file()):
        return False
    kept, number = target.with_name(f"{target.name}.unrecorded"), 1
    while kept.exists() or kept.is_symlink():  # an earlier overwrite's: kept too
        number += 1
        kept = target.with_name(f"{target.name}.unrecorded.{number}")
    os.rename(target, kept)  # under the build lock of `target`: no other process of the run names it
    log.warning(
        "%s: the earlier run's, with no record of what it was built from; built again (overwrite=true), "
        "the earlier one kept as %s",
        target,
        kept,
    )
    return True


def stage_passages(cfg: DictConfig, out: Path, resumed: str | None) -> tuple[list[Passage], dict | None]:
    """`retriever.passages` as given, or those `passages` builds, kept in DIR/passages.jsonl; and what the
    build's cleaning did (passage_cleaning.py's report: redactions, dropped duplicates, skipped files),
    kept in its record's `cleaning` so that a reuse has it too (None for a passages file)."""
    if cfg.retriever.passages:
        return read_passages(cfg.retriever.passages), None
    target = out / "passages.jsonl"
    build = plain(cfg.passages)
    built_from = passages_inputs(build)
    with cache_entry_lock(target):  # one builder among the run's processes (module docstring)
        advice = BUILT_FILES[0][2]
        if not moved_aside_by_overwrite(cfg, target, resumed) and reusable(target, built_from, advice, resumed):
            return read_passages(target), recorded_cleaning(target)
        passages, report = load_passages_report(None, build, "passages")
        write_built(target, "".join(p.to_json() + "\n" for p in passages), built_from)
        # Beside what it was built from (why_rebuild reads only `built_from` and `sha256`): not an input.
        record = json.loads(record_path(target).read_text(encoding="utf-8"))
        write_json_atomic(record_path(target), {**record, "cleaning": report.to_json()})
    return passages, report.to_json()


def recorded_cleaning(target: Path) -> dict | None:
    """The cleaning report kept in `target`'s record (None in a record written before it was kept)."""
    try:
        return json.loads(record_path(target).read_text(encoding="utf-8")).get("cleaning")
    except (OSError, ValueError, AttributeError):
        return None


def stage_training_file(cfg: DictConfig, out: Path, passages: list[Passage], resumed: str | None) -> Path:
    """DIR/synthetic/train.jsonl (with its report), built from `passages` by one of the run's processes."""
    rcfg = cfg.retriever
    target = out / "synthetic" / "train.jsonl"
    with cache_entry_lock(target):
        # Moved aside for the build to write anew: synthesize_training_file keeps, and so refuses, a file
        # without a record. A build cut off leaves no file, which a rerun builds.
        moved_aside_by_overwrite(cfg, target, resumed)
        return synthesize_training_file(rcfg.synthetic, rcfg.bm25, cfg.model, passages, out, cfg.seed, resumed)


def write_heldout_queries(queries: list[Query], file: Path) -> None:
    """The held-out groups' queries, written by the launching process alone: every process derives the
    same ones from the same training file, and the others' copies would only replace it."""
    if queries and not is_secondary_rank():
        write_queries(queries, file)


def run(cfg: DictConfig, out: Path, manifest: RunManifest) -> dict:
    begin(cfg)
    rcfg = cfg.retriever
    # The checkpoint train_module will resume (pipeline.train has checked its settings): it trained on the
    # passages and synthetic data in this folder, which are then not built again.
    resumed = resume_checkpoint(cfg, out, check=False)
    evaluated = bool(rcfg.evaluate_after and rcfg.eval_queries)
    questions = eval_question_set(rcfg.eval_queries, rcfg.eval_split) if evaluated else None
    # Every question of the file, dev and test (dev chooses eval=retrieval's settings, test reports), whose
    # copies are left out of training: read before synthesis (hours with method=llm), so a bad file stops
    # the run at once.
    asked = eval_questions(rcfg.eval_queries)
    if rcfg.eval_queries:
        manifest.add_input("retriever.eval_queries", rcfg.eval_queries)
    passages, cleaning = stage_passages(cfg, out, resumed)
    log.info("%d passages", len(passages))
    known = {p.id for p in passages}
    if questions is not None:  # before synthesis and training: a wrong gold id is found in seconds
        named = passages_named(rcfg.passages, plain(cfg.passages), len(passages))
        duplicates = dict((cleaning or {}).get("duplicates") or [])  # [dropped, kept] pairs
        questions = with_known_passages(questions, known, named, duplicates)
        if questions is not None:  # gold ids by position: an edited document moved them (queries.py)
            stale = gold_without_evidence(questions.queries, passages, str(rcfg.eval_queries))
            questions.about["gold_without_evidence"] = len(stale)

    if rcfg.train_file:
        files = [rcfg.train_file] if isinstance(rcfg.train_file, str) else list(rcfg.train_file)
        train_file = ",".join(files)
        groups = [g for f in files for g in read_tevatron(f)]
    else:
        train_file = stage_training_file(cfg, out, passages, resumed)
        groups = read_tevatron(train_file)
    train_groups, heldout = split_groups(groups, rcfg.heldout_fraction)
    train_groups, copies = without_heldout_questions(train_groups, heldout, asked)
    if not train_groups:
        raise ChipadaptError(
            f"{train_file}: every group is held out (retriever.heldout_fraction={rcfg.heldout_fraction}) "
            "or asks an evaluation question"
        )
    held_queries = heldout_queries(heldout, known)
    held_file = out / "synthetic" / "heldout_queries.jsonl"
    write_heldout_queries(held_queries, held_file)
    manifest.update(
        "data",
        {
            "passages": len(passages),
            "passages_cleaning": cleaning,  # redactions, dropped duplicates, skipped files (null: a file given)
            "train_groups": len(train_groups),
            "heldout_groups": len(heldout),
            **copies,
            "train_file": str(train_file),
            # what the stage's figures on retriever.eval_queries are measured on (null: none)
            "eval_queries": {**questions.about, "queries": len(questions.queries)} if questions else None,
        },
    )

    encoder = instantiate(cfg.stage.encoder)
    encoder.model.train()
    datamodule = instantiate(cfg.stage.datamodule)(train_groups=train_groups, val_groups=heldout, encoder=encoder)
    # Its training order, which a resume compares with its checkpoint's (data.training_order.changes_on_resume).
    manifest.update("data", {"training_order": datamodule.stats["training_order"]})
    module = instantiate(cfg.stage.module)(encoder=encoder)
    trained = train_module(
        cfg,
        out,
        manifest,
        module,
        datamodule,
        save=lambda trainer: publish_if_finite(cfg, out, trainer, encoder.model, lambda: encoder.save(out / "model")),
    )

    metrics = {"global_step": trained.trainer.global_step, "val": trained.after}
    query_sets = {"synthetic_heldout": QuerySet(held_queries, {"file": str(held_file)})} if held_queries else {}
    if questions is not None:
        query_sets["eval_queries"] = questions
    # The launching process alone compares the encoders: the others would repeat its whole evaluation and
    # replace its results.json with the same figures.
    if rcfg.evaluate_after and not query_sets:
        # Else nothing said why no results.json came: Lightning's own line ("Total length of list across
        # ranks is zero") was all a user saw.
        log.warning(
            "evaluation after training skipped: no held-out synthetic query (%d group(s) held out of %d, "
            "retriever.heldout_fraction=%s) and no retriever.eval_queries%s",
            len(heldout),
            len(groups),
            rcfg.heldout_fraction,
            " questions for these passages" if rcfg.eval_queries else "",
        )
    if query_sets and rcfg.evaluate_after and trained.trainer.is_global_zero:
        encoders = {
            "base": {"path": rcfg.encoder.path, "package": rcfg.encoder.package},
            "finetuned": {"path": str(out / "model"), "package": None},
        }
        comparison = compare_encoders(rcfg, passages, query_sets, encoders)
        metrics["retrieval"] = comparison.results
        # Before results.json, which names the task: its items are then there whenever its figures are.
        write_items(out, "retrieval", comparison.items)
        write_json_atomic(out / "results.json", {"retrieval": metrics["retrieval"]})
        for table in comparison_tables(metrics["retrieval"]):
            console.print(table)
        figures = evaluation_metrics({"retrieval": metrics["retrieval"]})
        log_final_figures(trained.trainer.loggers, figures, trained.trainer.global_step)
    manifest.update("metrics", metrics)
    log.info("encoder saved to %s", out / "model")
    return metrics
