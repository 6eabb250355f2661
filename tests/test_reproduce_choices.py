"""reproduce.py's `choose`: a step takes settings from the best finished candidate (the lr of the best
short DAPT run, the density of the best TIES screening job), and waits while a candidate is not done."""

import json
from pathlib import Path

import pytest
import yaml
from test_reproduce import compose_reproduce

from chipadapt.code_versions import code_versions
from chipadapt.errors import ChipadaptError
from chipadapt.reproduce.choices import NotReady, choose
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.runner import plan, resolved_command
from chipadapt.reproduce.steps import Step, load_steps


def dapt_run(folder: Path, lr: str, domain_bpb: list[float], general_bpb: float) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["tokenizer=base", f"optim.lr={lr}"]))
    after = {f"src{i}": {"bpb": v} for i, v in enumerate(domain_bpb)} | {"general": {"bpb": general_bpb}}
    (folder / "manifest.json").write_text(json.dumps({"metrics": {"after": after}}))


def test_the_lowest_held_out_domain_bpb_wins_and_the_general_split_does_not_count(tmp_path):
    dapt_run(tmp_path / "slow", "5e-06", [1.2, 1.0], general_bpb=0.1)  # best general, worse domain
    dapt_run(tmp_path / "fast", "0.001", [1.0, 0.9], general_bpb=3.0)
    spec = {"among": ["slow", "fast"], "by": "heldout_domain_bpb", "take": ["optim.lr"]}
    choice = choose(spec, tmp_path, {"slow", "fast"}, {"slow": False, "fast": False})
    assert choice.overrides == ("optim.lr=0.001",) and choice.winner == "fast"
    assert choice.scores == {"slow": pytest.approx(-1.1), "fast": pytest.approx(-0.95)}
    with pytest.raises(NotReady):
        choose(spec, tmp_path, {"slow"}, {"slow": False, "fast": False})
    with pytest.raises(ChipadaptError, match="was not run with optim.beta"):
        choose({**spec, "take": ["optim.beta"]}, tmp_path, {"slow", "fast"}, {"slow": False, "fast": False})


def eval_folder(folder: Path, domain_bpb: float, ifeval: dict[str, tuple[int, int]], overrides=()) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"corpus_ppl": {"domain_all.bpb": domain_bpb}}))
    rows = [{"id": k, "scores": {"instruction_loose": {"num": n, "den": d}}} for k, (n, d) in ifeval.items()]
    (folder / "ifeval_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if overrides:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))


def test_merge_balance_scores_on_the_candidates_own_prompts_and_filters_by_method(tmp_path):
    # The endpoints were scored on prompts p1..p4; the screening jobs on p1, p2 only. The IFEval gap that
    # scales the share is the ends' over all four prompts (1 - 1/4), not over p1, p2 (1 - 0): a screening's
    # few prompts estimate it too loosely. The merges' IFEval is set against the chip model's on p1, p2 (0).
    eval_folder(tmp_path / "instruct", 1.0, {"p1": (1, 1), "p2": (1, 1), "p3": (1, 1), "p4": (1, 1)})
    eval_folder(tmp_path / "chip", 0.5, {"p1": (0, 1), "p2": (0, 1), "p3": (0, 1), "p4": (1, 1)})
    sweep = tmp_path / "screen"
    # linear 0.2: IFEval 1 on p1, p2 -> share 1 / 0.75; 20% of the bpb gap -> (0.2 + 4/3) / 2 (the winner)
    eval_folder(sweep / "0", 0.9, {"p1": (1, 1), "p2": (1, 1)}, ["merge=linear", "merge.lam=0.2"])
    # linear 0.8: IFEval 1/2 -> share 0.5 / 0.75; 80% of bpb -> (0.8 + 2/3) / 2. Scaled by the gap on p1, p2
    # alone it would win: (0.8 + 0.5) / 2 = 0.65 against (0.2 + 1) / 2 = 0.6.
    eval_folder(sweep / "1", 0.6, {"p1": (1, 1), "p2": (0, 1)}, ["merge=linear", "merge.lam=0.8"])
    # slerp: better than both, but not a linear job
    eval_folder(sweep / "2", 0.5, {"p1": (1, 1), "p2": (1, 1)}, ["merge=slerp", "merge.lam=0.5"])
    spec = {
        "among": ["screen"],
        "where": {"merge": "linear"},
        "by": "merge_balance",
        "take": ["merge.lam"],
        "endpoints": ["instruct", "chip"],
    }
    done = {"screen", "instruct", "chip"}
    choice = choose(spec, tmp_path, done, {"screen": True})
    assert choice.overrides == ("merge.lam=0.2",) and choice.winner == "screen/0"
    assert choice.scores == {"screen/0": pytest.approx((0.2 + 4 / 3) / 2), "screen/1": pytest.approx((0.8 + 2 / 3) / 2)}
    with pytest.raises(NotReady):  # an endpoint not evaluated yet
        choose(spec, tmp_path, {"screen", "instruct"}, {"screen": True})


def test_merge_balance_on_a_full_sweep_scores_only_the_prompts_the_screening_scored(tmp_path):
    # A sweep evaluated on every prompt (p1..p4), chosen on the screening's prompts (p1, p2) only, so the
    # other prompts stay free for the paired tests. On all four prompts 0.2 wins; on p1, p2, 0.8 does.
    everything = ["p1", "p2", "p3", "p4"]
    eval_folder(tmp_path / "instruct", 1.0, {p: (1, 1) for p in everything})
    eval_folder(tmp_path / "chip", 0.5, {p: (0, 1) for p in everything})
    eval_folder(tmp_path / "screen" / "0", 0.9, {"p1": (1, 1), "p2": (0, 1)}, ["merge=linear", "merge.lam=0.2"])
    sweep = tmp_path / "sweep"
    # 0.2: 40% of the bpb gap; IFEval 3/4 on all prompts, 1/2 on p1, p2
    eval_folder(sweep / "0", 0.8, {"p1": (0, 1), "p2": (1, 1), "p3": (1, 1), "p4": (1, 1)}, ["merge.lam=0.2"])
    # 0.8: 60% of the bpb gap; IFEval 1/4 on all prompts, 1/2 on p1, p2
    eval_folder(sweep / "1", 0.7, {"p1": (1, 1), "p2": (0, 1), "p3": (0, 1), "p4": (0, 1)}, ["merge.lam=0.8"])
    spec = {"among": ["sweep"], "by": "merge_balance", "take": ["merge.lam"], "endpoints": ["instruct", "chip"]}
    done, multirun = {"sweep", "instruct", "chip", "screen"}, {"sweep": True}
    choice = choose(spec, tmp_path, done, multirun)
    assert choice.overrides == ("merge.lam=0.2",)
    assert choice.scores == {"sweep/0": pytest.approx(0.575), "sweep/1": pytest.approx(0.425)}
    screened = {**spec, "prompts_from": ["screen"]}
    choice = choose(screened, tmp_path, done, multirun)
    assert choice.overrides == ("merge.lam=0.8",)
    assert choice.scores == {"sweep/0": pytest.approx(0.45), "sweep/1": pytest.approx(0.55)}
    with pytest.raises(NotReady):  # the screening that names the prompts is not done yet
        choose(screened, tmp_path, done - {"screen"}, multirun)


def test_a_choosing_step_waits_for_its_candidates_and_its_command_names_the_choice(tmp_path):
    dapt_run(tmp_path / "a", "0.0003", [1.0], 1.0)
    spec = {"among": ["a"], "by": "heldout_domain_bpb", "take": ["optim.lr"]}
    steps = [
        Step("a", "train.py", ("optim.lr=0.0003",), "s"),
        Step("long", "train.py", ("x=1",), "s", needs=("a",), choose=spec),
    ]
    ledger = Ledger(tmp_path / "steps.json")
    assert resolved_command(steps[1], steps, tmp_path, set()) is None
    assert [a for _, a in plan(steps, ledger, tmp_path, set(), set())] == ["rerun", "run"]
    ledger.start("a", steps[0].command(tmp_path), tmp_path / "log")
    ledger.finish("a", "completed", 1.0, 0)
    command = resolved_command(steps[1], steps, tmp_path, {"a"})
    assert command[-2:] == ["optim.lr=0.0003", f"hydra.run.dir={tmp_path / 'long'}"]
    ledger.start("long", command, tmp_path / "log")
    ledger.finish("long", "completed", 1.0, 0)
    (tmp_path / "long").mkdir()
    assert [a for _, a in plan(steps, ledger, tmp_path, set(), set())] == ["skip", "skip"]


def test_variants_need_their_candidates_and_drop_the_skipped_ones():
    steps = {s.name: s for s in load_steps(compose_reproduce(["variant=fast"]))}
    dapt = steps["dapt"]
    assert dapt.choose["among"] == ["dapt_lr5e-6", "dapt_lr5e-5"] and {"dapt_lr5e-6", "dapt_lr5e-5"} <= set(dapt.needs)
    assert set(steps["merge_linear"].needs) >= {"screen_interp", "eval_base", "eval_sft"}
    full = {s.name: s for s in load_steps(compose_reproduce(["variant=full"]))}
    assert full["merge_ties"].choose["take"] == ["merge.method.density", "merge.method.scale"]
    assert "merge.method.density=0.2,0.5,0.8" in full["screen_sparse"].args
    # ChipAlign's sweep is measured on domain bpb and IFEval; the rest of the suite runs at the lambda chosen
    # on the screening's prompts (a skipped screening names none), after the screening has run.
    best = full["merge_chipalign_best"]
    assert best.choose["among"] == ["merge_chipalign"] and best.choose["prompts_from"] == [
        "screen_interp",
        "screen_sparse",
    ]
    assert {"merge_chipalign", "screen_interp", "screen_sparse", "eval_base", "eval_sft"} <= set(best.needs)
    assert "eval=[corpus_ppl,ifeval]" in full["merge_chipalign"].args and "eval=[eda_script,rag_qa]" in best.args
    order = [s.name for s in full.values()]
    assert order.index("screen_sparse") < order.index("merge_chipalign_best")
    smoke = {s.name: s for s in load_steps(compose_reproduce(["variant=smoke"]))}
    assert smoke["merge_chipalign_best"].choose["prompts_from"] == ["screen_interp"]
    assert "merge_chipalign_best" not in steps  # fast: one lambda, the whole suite in the sweep itself
    assert "eval=[corpus_ppl,ifeval,eda_script,rag_qa]" in steps["merge_chipalign"].args
    cfg = compose_reproduce(["variant=fast", "variant.skip=[dapt_lr5e-6,dapt_lr5e-5,dapt_lr3e-4,dapt_lr1e-3]"])
    with pytest.raises(ChipadaptError, match="steps.dapt.choose.among: every candidate is skipped"):
        load_steps(cfg)


def test_a_step_is_out_of_date_when_a_step_it_needs_finished_after_it_started(tmp_path):
    steps = [Step("a", "train.py", ("x=1",), "s"), Step("b", "train.py", ("y=2",), "s", needs=("a",))]
    ledger = Ledger(tmp_path / "steps.json")
    for s in steps:
        (tmp_path / s.name).mkdir()
        ledger.records[s.name] = {
            "command": s.command(tmp_path),
            "status": "completed",
            "code_versions": code_versions(),
        }
    ledger.records["a"] |= {"started": "2026-12-04T10:00:00", "finished": "2026-12-04T10:05:00"}
    ledger.records["b"] |= {"started": "2026-12-04T10:05:00", "finished": "2026-12-04T10:09:00"}
    assert [a for _, a in plan(steps, ledger, tmp_path, set(), set())] == ["skip", "skip"]
    # `a` was run again by an invocation with only=[a]: b built on the old a.
    ledger.records["a"] |= {"started": "2026-12-04T11:00:00", "finished": "2026-12-04T11:05:00"}
    assert [a for _, a in plan(steps, ledger, tmp_path, set(), set())] == ["skip", "rerun"]


def test_a_choice_that_cannot_be_made_stops_before_any_folder_is_moved(tmp_path, monkeypatch):
    from chipadapt.reproduce import runner

    spec = {"among": ["a"], "by": "heldout_domain_bpb", "take": ["optim.lr"]}
    steps = [Step("a", "train.py", ("x=1",), "s"), Step("long", "train.py", (), "s", needs=("a",), choose=spec)]
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "keep").write_text("earlier results")
    # `a` is not done and is not run here (only=[long]): the choice waits, the folder stays.
    with pytest.raises(ChipadaptError, match="chooses among steps not done"):
        runner.run_steps(steps, tmp_path, {"long"}, set())
    assert (tmp_path / "long" / "keep").read_text() == "earlier results" and not (tmp_path / ".stale").exists()


def test_a_misspelt_candidate_names_the_key():
    cfg = compose_reproduce(["variant=fast"])
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, "steps.dapt.choose.among", ["dapt_lr5e-5", "dapt_lr5e_6"])
    with pytest.raises(ChipadaptError, match=r"steps.dapt.choose: no step named 'dapt_lr5e_6'"):
        load_steps(cfg)
