"""ROUGE-L of the same answers under three scorers: torchmetrics' default (what chipadapt used before
issue 24), rouge_score without and with Porter stemming (the default now), and the paired difference
between the old and the new default.

  python benchmarks/rouge_scorers.py RUN/qa_rouge_items.jsonl   # any items file with prediction + reference strings
"""

import json
import sys

from torchmetrics.text.rouge import ROUGEScore

from chipadapt.eval.intervals import ratio
from chipadapt.eval.paired import paired_bootstrap
from chipadapt.eval.rouge import RougeL


def main(path: str) -> None:
    items = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    pairs = [(i["prediction"], i["reference"]) for i in items if isinstance(i.get("prediction"), str)]
    old = [float(ROUGEScore(rouge_keys="rougeL")([p], [r])["rougeL_fmeasure"]) for p, r in pairs]
    scorers = {
        "torchmetrics (no stemming)": old,
        "rouge_score, no stemming": [RougeL(False).score(p, r) for p, r in pairs],
        "rouge_score, Porter stemming": [RougeL(True).score(p, r) for p, r in pairs],
    }
    for name, scores in scorers.items():
        est = ratio(scores)
        print(f"{name:30s} {est.value:.4f}  95% [{est.ci[0]:.4f}, {est.ci[1]:.4f}]  n={est.n}")
    ones = [1.0] * len(pairs)
    d = paired_bootstrap(old, ones, scorers["rouge_score, Porter stemming"], ones)
    print(
        f"stemmed / torchmetrics: ratio {d.b / d.a:.3f}; "
        f"difference {d.diff:+.4f} [{d.ci[0]:+.4f}, {d.ci[1]:+.4f}], p = {d.p:.3g}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
