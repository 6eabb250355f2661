"""What an Optuna search ends with (optuna_search.StudySweeper): <sweep dir>/optimization_results.yaml with
the best trial, the trials tied with it, the runner-up and the winner's paired difference from it on the
objective's per-item files, and whether the merge sweep report (merge/sweep_report.py) chooses another job."""

import logging
import math
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

log = logging.getLogger(__name__)
FOLDER = "chipadapt_folder"  # a trial's user attribute: the job folder it ran in
# conf/eval/perplexity.yaml: what caps each split's documents and the text scored of each
PERPLEXITY_CAPS = ("max_documents", "max_tokens", "max_tokens_per_document", "max_chars_per_document")
RETRIEVAL_STAGES = ("retriever", "reranker")  # each holds synthetic query groups out (<stage>.heldout_fraction)


def matching(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's completed trials, best first (their settings are this search's: optuna_search.check_study)."""
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(done, key=lambda t: (sign * t.value, t.number))


def report(study: optuna.Study, sweep_dir: Path, directions: list[str], config) -> None:
    from chipadapt.io.atomic import write_text_atomic

    if len(directions) > 1:
        front = [{"number": t.number, "params": t.params, "values": t.values} for t in study.best_trials]
        results: dict = {"name": "optuna", "solutions": front}
    else:
        ranked = matching(study)
        if not ranked:
            log.warning("no trial of the study completed: no optimization_results.yaml")
            return
        results = single_objective(ranked, str(config.get("optimized_metric") or ""), config)
        best = ranked[0]
        tied = [t for t in ranked if t.value == best.value]
        other = merge_report_choice(config, sweep_dir)
        if other is not None and other != folder_name(best):
            results["merge_sweep_report_choice"] = other
            log.warning(
                "Optuna's best trial is #%d; the merge sweep report (sweep_report.json) chooses job %s, %s",
                best.number,
                other,
                "tied with it on this metric (the report weighs the domain metric too)"
                if other in {folder_name(t) for t in tied}
                else "weighing the domain metric too",
            )
        log.info("Best trial #%d: value %s, params %s", best.number, best.value, best.params)
        log.warning("%s", results["selection_bias"])
    write_text_atomic(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results)))


def single_objective(ranked: list[optuna.trial.FrozenTrial], metric: str, config) -> dict:
    """The best trial, any tied with it, and the runner-up: the best trial of a worse value (a tied trial
    is no runner-up: the paired difference between two tied trials says nothing about the winner)."""
    best = ranked[0]
    tied = [t for t in ranked if t.value == best.value]
    results: dict = {
        "name": "optuna",
        "best_trial": best.number,
        "best_params": best.params,
        "best_value": best.value,
        "completed_trials": len(ranked),
        "selection_bias": selection_bias(metric, len(ranked), config),
    }
    if not math.isfinite(best.value):  # a diverged trial returns the direction's worst value (cli.py)
        results["note"] = (
            f"every completed trial diverged (stored as {best.value}, the worst value for the direction): "
            "none is a best; lower optim.lr or the search's upper end"
        )
    if len(tied) > 1:
        results["tied_best"] = [{"number": t.number, "params": t.params} for t in tied]
        log.warning(
            "best value %s is tied between %d trials (%s): Optuna names the first%s",
            best.value,
            len(tied),
            ", ".join(f"#{t.number}" for t in tied),
            "" if math.isfinite(best.value) else " (all of them diverged)",
        )
    worse = ranked[len(tied) :]
    if worse:
        second = worse[0]
        results["runner_up"] = {"number": second.number, "params": second.params, "value": second.value}
        results["versus_runner_up"] = versus(best, second, metric)
    elif len(tied) > 1:
        results["runner_up"] = "tied (every completed trial has the best value: tied_best)"
    return results


def selection_bias(metric: str, trials: int, config) -> str:
    """One line: the items every trial's objective was measured on, and why the chosen trial's figure on them
    is no estimate of its settings' quality (the best of several noisy figures on the same items is
    optimistic: the search fitted them, and a report measuring those items again inherits the bias)."""
    return (
        f"best_value is the best {metric or 'objective'} of {trials} trial(s) on the items every trial was measured "
        f"on ({objective_items(metric, config)}): optimistically biased by the choice, not an unbiased estimate of "
        "the chosen settings; measure them again on items the search did not see"
    )


def objective_items(metric: str, config) -> str:
    """Which items a search's metric is computed on, by its name and the config that chose them."""

    def setting(key: str):
        return OmegaConf.select(config, key, default=None)

    stage = setting("stage.name")
    if metric.startswith("retrieval.synthetic_heldout.") or (metric.startswith("val/") and stage in RETRIEVAL_STAGES):
        stage = stage if stage in RETRIEVAL_STAGES else "retriever"
        key = f"{stage}.heldout_fraction"
        fraction = setting(key)
        held = f"{key}={fraction}" if fraction is not None else f"{key}=null: those the retriever run held out"
        return f"the {stage}'s held-out synthetic query groups ({held}), validated on and reported"
    if metric.startswith("val/"):
        parts = metric.split("/")  # val/<split>/<measure>, or val/loss over every validation split
        of = f"of split {parts[1]!r}" if len(parts) > 2 else "of every validation split"
        fraction = setting("data.val_fraction")
        held = f"data.val_fraction={fraction}" if fraction is not None else "the data's hold-out"
        return f"the held-out validation documents {of} ({held}), the ones evaluate.py and reports read"
    task, _, rest = metric.partition(".")
    if "/" in task or not rest or setting(f"eval.{task}") is None:  # train_loss, a custom metric
        return "the items the metric was computed on"
    limit = setting(f"eval.{task}.limit")
    first = f"the first {limit} items" if limit is not None else "all items"
    if task == "perplexity":
        return perplexity_items(rest.split(".")[0], setting)
    if task == "eda_script":
        fraction = setting("eval.eda_script.eval_fraction")
        return f"{first} of eda_script's evaluation split (eval.eda_script.eval_fraction={fraction}, eval.{task}.limit)"
    if setting(f"eval.{task}.max_per_subject") is not None or task in ("mcq", "chip_mcq"):
        per = setting(f"eval.{task}.max_per_subject")
        return (
            f"{first} of eval task {task!r} after the first {per if per is not None else 'all'} of each subject "
            f"(eval.{task}.max_per_subject, eval.{task}.limit), the ones a report on that task scores"
        )
    return f"{first} of eval task {task!r} (eval.{task}.limit), the ones a report on that task scores"


def perplexity_items(split: str, setting) -> str:
    """The documents eval.perplexity scores for `split`, or for every domain split (not `general: true`)
    behind the aggregates domain_mean/domain_all: each split's held-out part, or all of it where its
    held_out is null (a general split too), capped as the caps say."""
    splits = setting("eval.perplexity.splits") or {}
    names = (
        [n for n in splits if not (splits[n] or {}).get("general")]
        if split in ("domain_mean", "domain_all")
        else [split]
    )
    parts = []
    for name in names:
        held_out = setting(f"eval.perplexity.splits.{name}.held_out")
        key = f"eval.perplexity.splits.{name}.held_out={'null' if held_out is None else held_out}"
        parts.append(
            f"every document of {name!r} ({key}: scored whole)"
            if held_out is None
            else f"the held-out documents of {name!r} ({key})"
        )
    caps = ", ".join(f"eval.perplexity.{k}={setting(f'eval.perplexity.{k}')}" for k in PERPLEXITY_CAPS)
    which = (
        f"eval.perplexity {split} over its domain splits"
        if split in ("domain_mean", "domain_all")
        else "eval.perplexity"
    )
    return f"{which}: {'; '.join(parts) or 'no split configured'} ({caps}), the ones a report scores"


def folder_name(trial: optuna.trial.FrozenTrial) -> str:
    return Path(trial.user_attrs.get(FOLDER) or str(trial.number)).name


def exact_floor_note(row: dict) -> str | None:
    """Where an exact paired test has too few draws to reach a small p. Over groups (e.g. conversation trees)
    whole groups are swapped: they, not the items, bound it."""
    grouped = row.get("groups") not in (None, "")
    draws, unit = (row["groups"], "groups") if grouped else (row.get("n"), "items")
    if "exact" in str(row.get("test")) and isinstance(draws, int) and draws < 6:
        return f"n={draws} {unit}: an exact test cannot go below p={2 / 2**draws:.3g}"
    return None


def versus(best: optuna.trial.FrozenTrial, second: optuna.trial.FrozenTrial, metric: str) -> dict:
    """The winner's paired difference from the runner-up on the objective's items, or why there is none."""
    recorded = [t.user_attrs.get(FOLDER) for t in (second, best)]
    if not all(recorded):  # a study stored before trials recorded their folders: none to read, not the cwd
        return {"paired": False, "reason": "a trial has no recorded job folder (stored before folders were)"}
    folders = [Path(f) for f in recorded]
    if not all(f.is_dir() for f in folders):
        return {"paired": False, "reason": "a trial's folder is not on this machine"}
    from chipadapt.eval.paired_compare import paired_rows

    try:
        rows = paired_rows([(f"#{second.number}", folders[0]), (f"#{best.number}", folders[1])], [metric])
    except Exception as err:  # noqa: BLE001 (the pairing is an addition to the result: said, not fatal)
        return {"paired": False, "reason": f"{type(err).__name__}: {err}"}
    row = next((r for r in rows if r.get("metric") in (metric, metric.split(".")[0])), None)
    if row is None:
        return {"paired": False, "reason": f"the trials' folders hold no per-item files for {metric}"}
    if row.get("test") == row.get("verdict") and row.get("reason"):
        return {"paired": False, "reason": str(row["reason"])}
    keys = ("n", "groups", "difference", "ci95_lo", "ci95_hi", "p", "test", "verdict")
    out = {"paired": True, "metric": row.get("metric"), "of": f"#{best.number} - #{second.number}"}
    out.update({k: row.get(k) for k in keys})
    if out["groups"] in (None, ""):  # items drawn one by one (no groups), as exact_floor_note reads it
        del out["groups"]
    if note := exact_floor_note(row):
        out["note"] = note
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def merge_report_choice(config, sweep_dir: Path) -> str | None:
    """The job the merge sweep report (merge/sweep_report.py) chooses from the same folders, when it runs."""
    spec = OmegaConf.select(config, "hydra.callbacks.lambda_sweep")
    if spec is None:
        return None
    from chipadapt.merge.sweep_report import choose, collect

    rows = collect(sweep_dir, str(spec.domain_metric), str(spec.instruct_metric))
    if not rows:
        return None
    from chipadapt.optimized_metric import better_direction

    instruct_higher = better_direction(str(spec.instruct_metric)) != "minimize"
    return str(choose(rows, bool(spec.domain_higher_is_better), instruct_higher)["job"])
