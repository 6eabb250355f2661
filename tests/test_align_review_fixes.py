"""What a review of the SteerLM/SFT fixes found: held-out figures of the old rule counted done by the
reproduction; intervals resampling threads of one tree as independent; a checkpoint from before group_by
refused with advice that did not work; journals deleted before the run was recorded; steering recorded
for tasks it never touched; signals ignored at every exit; prompts starting with an assistant turn."""

import signal

import pytest
import torch
from conftest import compose, write_jsonl
from test_upgrade_reruns import CHECKPOINT_KEY

from chipadapt.errors import ChipadaptError
from chipadapt.stages.resume_settings import check_resume_settings, trajectory_settings

# --- 3. a checkpoint from before group_by --------------------------------------------------------------


@pytest.mark.parametrize(("stage", "source"), [("sft", "oasst"), ("attribute_model", "oasst_labelled")])
def test_a_checkpoint_from_before_group_by_is_told_the_override_that_resumes_it(tmp_path, stage, source):
    cfg = compose([f"stage={stage}", "model=tiny"], tmp_path / "run")
    key = f"data.sources.{source}.group_by"
    earlier = {k: v for k, v in trajectory_settings(cfg).items() if not k.endswith(key)}  # and the stage's copy
    torch.save({CHECKPOINT_KEY: earlier, "global_step": 2}, tmp_path / "last.ckpt")
    with pytest.raises(ChipadaptError) as err:
        check_resume_settings(tmp_path / "last.ckpt", cfg)
    assert f"({key}, stage.datamodule.{key}: None -> 'message_tree_id')" in str(
        err.value
    )  # held out by id before: as null now
    assert f"rerun with that run's settings ({key}=null) to resume it" in str(err.value)
    check_resume_settings(tmp_path / "last.ckpt", compose([f"stage={stage}", "model=tiny", f"{key}=null"], tmp_path))


# --- 2. intervals resample the groups held out together ------------------------------------------------


def _clustered(n_groups: int = 12, per_group: int = 10):
    """Ratings whose errors are shared within a group (one tree's threads alike): independent threads they are not."""
    import numpy as np

    rng = np.random.default_rng(1)
    shift = np.repeat(rng.normal(0, 1.0, n_groups), per_group)
    labels = np.repeat(rng.integers(0, 5, n_groups), per_group).astype(float) + rng.normal(0, 0.1, n_groups * per_group)
    predicted = labels + shift
    return predicted.tolist(), labels.tolist(), np.repeat(np.arange(n_groups), per_group).tolist()


def test_the_attribute_models_intervals_resample_groups_not_threads():
    from chipadapt.modules.attribute_figures import attribute_figures

    predicted, labels, groups = _clustered()
    by_thread = attribute_figures(predicted, labels, 2.0)
    by_group = attribute_figures(predicted, labels, 2.0, groups=groups)
    assert (by_thread["n"], by_thread["groups"]) == (120, 120) and (by_group["n"], by_group["groups"]) == (120, 12)
    assert by_group["mae"] == pytest.approx(by_thread["mae"])  # the same figure ...
    width = lambda f, key: f[key][1] - f[key][0]  # noqa: E731
    assert width(by_group, "mae_ci") > 1.8 * width(by_thread, "mae_ci")  # ... with its truthful, wider interval
    assert width(by_group, "spearman_ci") > width(by_thread, "spearman_ci")
    assert by_group["spearman_ci_method"].startswith("cluster bootstrap")
    assert by_group["mae_minus_baseline"]["n"] == 12  # the paired test over groups too


def test_held_out_items_carry_their_group_into_the_batches(tmp_path):
    from conftest import write_jsonl
    from test_align_trial_fixes import _tree

    from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder
    from chipadapt.steerlm.attribute_data import AttributeDataModule

    cfg = compose(["stage=attribute_model", "model=tiny"], tmp_path / "run")
    path = write_jsonl(tmp_path / "trees.jsonl", [row for t in range(30) for row in _tree(t, 3)])
    cfg.data.sources = {"a": {"path": str(path), "format": "chat", "group_by": "message_tree_id"}}
    cfg.data.val_fraction = 0.3
    data = AttributeDataModule(cfg.data, load_tokenizer(resolve_model_folder(cfg.model)), seed=0)
    data.setup("fit")
    assert data.stats["val_conversations"] == 3 * data.stats["val_groups"] > 0
    groups = [g for batch in data.val_dataloader()[0] for g in batch["group"].tolist()]
    assert len(groups) == data.stats["val_conversations"] and len(set(groups)) == data.stats["val_groups"]
    assert "group" not in next(iter(data.train_dataloader()))


def test_the_report_says_a_figure_held_out_by_thread_id_and_uses_the_group_interval_otherwise():
    from chipadapt.reproduce.report.alignment_verdicts import BY_THREAD_ID, attribute_row

    old = {"quality": {"spearman": 0.3, "n": 135, "mae": 1.0, "baseline_mae": 1.1}}
    assert BY_THREAD_ID in attribute_row(old)[-1]
    new = {"quality": {**old["quality"], "groups": 49, "n": 342, "spearman_ci": [-0.05, 0.6]}}
    row = attribute_row(new)
    assert BY_THREAD_ID not in row[-1] and "[-0.05, +0.60]" in row[-3] and "342 conversations from 49 groups" in row[-1]


def test_sft_validation_items_record_their_group(tmp_path):
    import numpy as np
    from test_align_trial_fixes import _tree
    from test_sft_inputs_trial import sft_data

    from chipadapt.stages.validation_items import validation_records

    path = write_jsonl(tmp_path / "trees.jsonl", [row for t in range(40) for row in _tree(t, 3)])
    base = ["data.sources.kestrel_qa=null", "data.val_sources=null", f"+data.sources.mine.path={path}"]
    data = sft_data(tmp_path, [*base, "data.val_fraction=0.2", "+data.sources.mine.group_by=message_tree_id"])
    data.setup()
    groups = data.val_groups["mine"]
    assert len(groups) == len(data.val_sets["mine"]) and len(set(groups)) * 3 == len(groups)
    table = np.array([[i, 1.0, 2.0, 3.0] for i in range(len(groups))])
    records = validation_records({"mine": table}, None, data.val_groups)
    assert [r["group"] for r in records] == groups


# --- 4. the journal outlives the run until its manifest says completed ---------------------------------


def test_a_signal_before_the_manifest_records_completion_keeps_the_annotation_journal(tmp_path, monkeypatch):
    from helpers.steerlm_own_data import annotate_overrides, trained_attribute_model

    from chipadapt.interrupts import Interrupted
    from chipadapt.manifest import RunManifest
    from chipadapt.pipeline import train
    from chipadapt.steerlm.progress_journal import journal_path

    class Factory:  # trained_attribute_model takes a tmp_path_factory
        def mktemp(self, name):
            (tmp_path / name).mkdir()
            return tmp_path / name

    steer = trained_attribute_model(Factory())
    run = tmp_path / "ann"
    finish = RunManifest.finish

    def stopped_on_completion(self, status, error=None):
        if status == "completed":
            raise Interrupted(signal.SIGTERM)  # the signal lands after annotated.jsonl was published
        finish(self, status, error)

    monkeypatch.setattr(RunManifest, "finish", stopped_on_completion)
    with pytest.raises(Interrupted):
        train(compose(annotate_overrides(steer, "annotate.limit=6"), run))
    journal = journal_path(run, "annotate")
    assert journal.exists() and len(journal.read_text().splitlines()) >= 6  # every rating kept
    monkeypatch.setattr(RunManifest, "finish", finish)
    train(compose(annotate_overrides(steer, "annotate.limit=6"), run))  # continues from the journal
    assert journal.exists()  # completed now, removed on the rerun that passes it as done
    train(compose(annotate_overrides(steer, "annotate.limit=6"), run))
    assert not journal.exists()


# --- 5. bootstrap's journal is of one seed ---------------------------------------------------------------


def test_bootstrap_journal_of_another_seed_is_not_reused(tmp_path):
    from omegaconf import OmegaConf

    from chipadapt.steerlm.progress_journal import progress_journal

    def key(seed, stage="bootstrap"):
        cfg = OmegaConf.create({stage: {"limit": 2}, "data": {"template": {"_target_": "x"}}, "seed": seed})
        journal = progress_journal(cfg, tmp_path, stage, {})
        journal.close()
        return journal.key

    assert key(1) != key(2)  # other draws asked for: started afresh
    assert key(1, "annotate") == key(2, "annotate")  # ratings do not depend on the seed


# --- 7. signals ignored at exit only after a completed job ----------------------------------------------


def completes(cfg):
    return 0


def fails(cfg):
    from chipadapt.errors import ChipadaptError

    raise ChipadaptError("refused")


def stopped(cfg):
    from chipadapt.interrupts import Interrupted

    raise Interrupted(signal.SIGTERM)


@pytest.mark.parametrize(("job", "registered"), [("completes", True), ("fails", False), ("stopped", False)])
def test_launch_ignores_signals_at_exit_only_after_a_completed_job(tmp_path, monkeypatch, job, registered):
    import atexit
    import sys

    from chipadapt import cli

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "job.yaml").write_text("x: 1\n")
    monkeypatch.syspath_prepend(str(tmp_path.parent))
    monkeypatch.setattr(sys, "argv", ["job.py", f"hydra.run.dir={tmp_path / 'run'}"])
    seen = []
    monkeypatch.setattr(atexit, "register", lambda f, *a: seen.append(f))
    monkeypatch.setattr(atexit, "unregister", lambda f: None)
    monkeypatch.setitem(cli._last_job, "completed", False)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        launch = cli.entry_point(str(conf), "job", f"test_align_review_fixes:{job}")
        try:
            launch()
        except SystemExit:
            pass
        assert (cli.ignore_signals_at_exit in seen) == registered
        cli.ignore_signals_at_exit()  # at the exit: SIGTERM keeps its default after a failed or stopped job
        assert (signal.getsignal(signal.SIGTERM) is signal.SIG_IGN) == registered
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# --- 8. a fitted prompt starts with a user turn --------------------------------------------------------


def _words(messages):
    return sum(len(m["content"].split()) + 1 for m in messages)


def test_a_fitted_prompt_never_starts_with_an_assistant_turn():
    from chipadapt.models.context_fit import fitted_prompt, system_too_long

    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one " * 10},
        {"role": "user", "content": "two " * 10},  # two user turns in a row (a transcript edited by hand)
        {"role": "assistant", "content": "three " * 10},
        {"role": "user", "content": "four " * 5},
        {"role": "assistant", "content": "five " * 5},
        {"role": "user", "content": "last"},
    ]
    kept, left_out = fitted_prompt(messages, _words, 60, 25)  # room for 35 words of prompt
    assert kept[0]["role"] == "system" and kept[1]["role"] == "user", [m["role"] for m in kept]
    assert _words(kept) <= 35 and left_out == 3 and kept[1]["content"].startswith("four")
    long_system = [{"role": "system", "content": "rule " * 50}, {"role": "user", "content": "hi"}]
    assert fitted_prompt(long_system, _words, 60, 20) == (None, 0)
    assert system_too_long(long_system, _words, 60, 20) and not system_too_long(messages, _words, 60, 20)


# --- 6. steering keys and labels only the tasks it touches ---------------------------------------------


def test_only_tasks_that_generate_chat_replies_are_keyed_and_labelled_with_the_attributes(tmp_path):
    from omegaconf import OmegaConf

    from chipadapt.eval import run as eval_run
    from chipadapt.eval import steering
    from chipadapt.models.text_generation import CHAT_PROMPTS

    class Task:
        needs_model, items = False, None

        def __init__(self, **kw):
            self.__dict__.update(kw)

        def run(self, model, tokenizer):
            if getattr(self, "max_new_tokens", None) and CHAT_PROMPTS.get() and getattr(self, "chat", True):
                CHAT_PROMPTS.get()(["q"], None)  # its prompts written with the attributes
            return {"score": 1.0}

    def task(**kw):
        return {"_target_": f"{__name__}.make_task", **kw}

    global make_task
    make_task = Task
    tasks = OmegaConf.create(
        {"ppl": task(), "gen": task(max_new_tokens=4), "verilog": task(max_new_tokens=4, mode="completion")}
    )
    template = {"_target_": "x"}
    steering.STEERING.set((template, "quality:4"))

    def written(prompts, tokenizer):  # as _steered_prompts counts them, without a template to build
        steering._written["batches"] += 1
        return prompts

    CHAT_PROMPTS.set(written)
    try:
        results = eval_run.evaluate_folder(tmp_path, tasks, "cpu", tmp_path / "out", "float32", "eager", True)
        assert results["gen"]["steerlm_attributes"] == "quality:4"
        assert "steerlm_attributes" not in results["ppl"] and "steerlm_attributes" not in results["verilog"]
        assert steering.steering_key(Task()) == {} and steering.steering_key(Task(max_new_tokens=1))
    finally:
        steering.stop_steering()
    assert steering.STEERING.get() is None and CHAT_PROMPTS.get() is None  # the next job starts unsteered


# --- 9. the report's steer row reports the probe's paired tests -----------------------------------------


def test_the_steer_row_reports_the_probes_paired_tests():
    from chipadapt.reproduce.report.alignment_verdicts import steer_row

    facts = {"steer_quality_gap": 0.4, "steer_helpfulness_gap": 0.3, "steer_replies": 16}
    assert "no interval" in steer_row(facts)[-1]  # a record from before the paired tests
    low_minus_high = {"difference": -0.4, "ci": [-0.7, -0.1], "p": 0.01, "n": 16, "test": "paired-bootstrap"}
    facts["steer_minus_first"] = {"quality": low_minus_high, "helpfulness": {**low_minus_high, "ci": [-0.6, -0.05]}}
    row = steer_row(facts)
    assert "quality +0.40 [+0.10, +0.70] (p = 0.01, n = 16 prompts)" in row[2] and row[3] == "reproduces"
