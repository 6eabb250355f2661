"""The merge sweep report gives each lambda's scores with their 95% interval and item count, and tests
its choice against the runner-up on the same items: "chosen: lam=1" on 4 IFEval prompts, `instruct`
0.0 at every other lambda, was presented as a choice with no interval and no word that it was noise."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from chipadapt.eval.items import summarize

DOMAIN, INSTRUCT = "perplexity.domain.bpb", "ifeval.prompt_loose"


def write_job(sweep, job: str, lam: float, passed: list[bool], bits: list[float], prompts: list[str] | None = None):
    """A merge job's folder as merge.py leaves it: results.json, the per-item records, the merge summary."""
    folder = sweep / job
    (folder / "model").mkdir(parents=True)
    prompts = prompts or [f"Say something {i} without commas." for i in range(len(passed))]
    ifeval = [
        {"id": f"p{i}", "prompt": prompts[i], "reference": ["punctuation:no_comma"], "scores": {"prompt_loose": ok}}
        for i, ok in enumerate(passed)
    ]
    documents = [
        {
            "id": f"domain/d{i}.md",
            "split": "domain",
            "tokens": 100,
            "bytes": 400,
            "scores": {"domain.bpb": {"num": b * 400, "den": 400}},
        }
        for i, b in enumerate(bits)
    ]
    for task, items in (("ifeval", ifeval), ("perplexity", documents)):
        (folder / f"{task}_items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    results = {"ifeval": summarize(ifeval), "perplexity": summarize(documents)}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "manifest.json").write_text(
        json.dumps({"config": {"eval": {"perplexity": {"max_tokens": 256}, "ifeval": {}}}})
    )
    (folder / "model" / "merge_manifest.json").write_text(json.dumps({"summary": {"method": "chipalign", "lam": lam}}))
    return results


def report(sweep, domain_higher_is_better: bool = False):
    from chipadapt.merge.sweep_report import LambdaSweepReport

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "runtime": {"cwd": str(sweep)}}, "logger": None})
    LambdaSweepReport(DOMAIN, domain_higher_is_better, INSTRUCT).on_multirun_end(config)
    return json.loads((sweep / "sweep_report.json").read_text())


def test_each_lambda_has_its_interval_and_n_and_a_noise_level_pick_is_said_to_be_one(tmp_path, caplog):
    import logging

    sweep = tmp_path / "sweep"
    fails = [False] * 4
    results = write_job(sweep, "0", 0.0, fails, [4.8, 4.7])
    write_job(sweep, "1", 0.5, fails, [4.9, 4.8])
    write_job(sweep, "2", 1.0, [True, False, False, False], [5.4, 5.3])
    with caplog.at_level(logging.INFO):
        found = report(sweep)
    rows = {r["lam"]: r for r in csv.DictReader((sweep / "sweep_report.csv").open())}
    first = rows["0.0"]
    assert (float(first["instruct_ci95_lo"]), float(first["instruct_ci95_hi"])) == pytest.approx(
        tuple(results["ifeval"]["prompt_loose_ci"])
    )  # 0 of 4: [0, 0.60], the interval the evaluation computed
    assert first["instruct_n"] == "4" and first["domain_n"] == "2"
    assert first["domain_ci95_lo"] == first["domain_ci95_hi"] == ""  # 2 documents: too few for an interval
    # Lambda 0 and lambda 1 tie on the normalised balance; nothing tells them apart on these items.
    assert found["chosen"]["lam"] == 0.0 and found["runner_up"]["lam"] == 1.0
    assert found["distinguishable_from_runner_up"] is False
    assert [v["outcome"] for v in found["versus_runner_up"]] == ["within noise", "within noise"]
    assert found["versus_runner_up"][1]["n"] == 4 and found["versus_runner_up"][1]["test"] == "mcnemar-tango"
    assert "is not distinguishable from the runner-up chipalign lam=1 on the same items" in found["statement"]
    assert "ifeval.prompt_loose 0 [0, 0.6024] n=4" in found["statement"]  # the chosen figures carry theirs
    assert found["statement"] in caplog.text  # the line the sweep ends with
    assert (sweep / "sweep_report.png").stat().st_size > 1000


def test_a_choice_the_items_support_is_said_to_differ(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", 0.0, [i < 5 for i in range(40)], [4.8] * 3)
    write_job(sweep, "1", 0.5, [i < 30 for i in range(40)], [4.8] * 3)  # 25 more prompts pass, the same bits
    found = report(sweep)
    assert found["chosen"]["lam"] == 0.5 and found["distinguishable_from_runner_up"] is True
    domain, instruct = found["versus_runner_up"]
    assert instruct["outcome"] == "better" and instruct["difference"] == pytest.approx(25 / 40)
    assert domain["outcome"] == "within noise"
    assert (
        "perplexity.domain.bpb is 4.8 at every lambda, so the choice rests on the other measure alone"
        in (found["statement"])
    )
    assert (
        found["statement"].startswith("chosen chipalign lam=0.5") and "differs from the runner-up" in found["statement"]
    )


def test_jobs_that_scored_other_items_are_not_paired_and_not_a_choice(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", 0.0, [False] * 20, [4.8] * 3)
    other = [f"Another prompt {i}." for i in range(20)]  # the same ids, other prompts
    write_job(sweep, "1", 0.5, [True] * 20, [4.8] * 3, prompts=other)
    found = report(sweep)
    instruct = found["versus_runner_up"][1]
    assert instruct["outcome"] == "not paired" and "20 of 20 items of job 1 differ" in instruct["reason"]
    assert found["distinguishable_from_runner_up"] is False


def test_a_domain_sense_the_metric_contradicts_stops_the_sweep_in_one_line(capsys):
    from chipadapt.merge.sweep_report import LambdaSweepReport

    config = OmegaConf.create({"eval": {"mcq": {}, "ifeval": {}}})
    with pytest.raises(SystemExit) as stopped:
        LambdaSweepReport("mcq.acc", False, INSTRUCT).on_multirun_start(config)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "chipadapt: error: hydra.callbacks.lambda_sweep.domain_higher_is_better=false but domain_metric=mcq.acc is "
        "higher-is-better; set hydra.callbacks.lambda_sweep.domain_higher_is_better=true\n"
    )
    LambdaSweepReport("mcq.acc", True, INSTRUCT).on_multirun_start(config)  # told right: no word
    assert capsys.readouterr().err == ""
