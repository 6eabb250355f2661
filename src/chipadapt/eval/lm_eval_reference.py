"""lm-evaluation-harness 0.4.13 as a reference, offline: its own MMLU task YAMLs pointed at local JSONL.

Used by benchmarks/eval_speed.py and tests/test_lm_eval_agreement.py to check `preset=lm_eval` item
by item. Each subject's installed YAML (`lm_eval/tasks/mmlu/<variant>/mmlu_<subject>.yaml`, with its
description and the shared template it includes) is kept as it is; only where the documents come
from changes: `dataset_path: json` and `dataset_kwargs: {data_files: ...}` (lm-eval's way to read
local files), one test file and one dev file (the few-shot split) per subject.
lm-eval is a development dependency (`pip install -e '.[dev]'`); nothing here runs at evaluation time.
"""

import json
from pathlib import Path

import yaml

# chipadapt's MCQ styles and the lm-eval MMLU variant with the same prompt shape.
VARIANTS = {"letters": ("default", ""), "cloze": ("continuation", "_continuation")}


def write_mmlu_tasks(rows: list[dict], dev_rows: list[dict], folder: Path, style: str) -> dict[str, str]:
    """One lm-eval task per subject of `rows`, reading local files; returns {task name: subject}."""
    import lm_eval

    variant, suffix = VARIANTS[style]
    installed = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / variant
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for subject in sorted({r["subject"] for r in rows}):
        data = {}
        for split, source in (("test", rows), ("dev", dev_rows)):
            path = folder / f"{subject}_{split}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in source if r["subject"] == subject))
            data[split] = str(path)
        config = yaml.safe_load((installed / f"mmlu_{subject}.yaml").read_text())
        config["include"] = str(installed / config["include"])  # the installed template, by absolute path
        config["task"] = f"local_mmlu_{subject}{suffix}"
        config.pop("tag", None)  # keep the local tasks out of lm-eval's own groups
        config.update({"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": data}})
        (folder / f"{config['task']}.yaml").write_text(yaml.safe_dump(config))
        names[config["task"]] = subject
    return names


def run_mmlu(lm, rows: list[dict], dev_rows: list[dict], folder: Path, style: str, num_fewshot: int) -> dict[int, int]:
    """lm-eval's prediction (argmax log-likelihood) per question, keyed by its position in `rows`. Not by
    its text: MMLU repeats questions word for word (173 of mmlu_test's 14,042 rows repeat an earlier one's
    text, 80 texts across subjects), which a dict by text merged into one. lm-eval numbers each task's
    documents (`doc_id`) in the order of its file, which holds the subject's rows in `rows` order."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    names = write_mmlu_tasks(rows, dev_rows, folder, style)
    out = simple_evaluate(
        model=lm,
        tasks=list(names),
        num_fewshot=num_fewshot,
        log_samples=True,
        task_manager=TaskManager(include_path=str(folder), include_defaults=False),
    )
    # task name -> the positions in `rows` of its subject's rows, in file (doc_id) order
    positions = {name: [i for i, r in enumerate(rows) if r["subject"] == subject] for name, subject in names.items()}
    predictions = {}
    for name, samples in out["samples"].items():
        for sample in samples:
            lls = [ll for ll, _ in sample["filtered_resps"]]
            predictions[positions[name][sample["doc_id"]]] = max(range(len(lls)), key=lls.__getitem__)
    return predictions


def ifeval_verdicts(row: dict, response: str, seed: int) -> tuple[list[bool], list[bool]]:
    """lm-eval's own IFEval checker (strict, loose per instruction) on one response. Where a record
    gives an argument the checker rejects (keys 1122, 1129: the letter "#"), it draws one from Python's
    `random`: `seed` fixes that draw; such a verdict is chance in lm-eval itself."""
    import random

    from lm_eval.tasks.ifeval.utils import process_results

    random.seed(seed)
    result = process_results(row, [response])
    return result["inst_level_strict_acc"], result["inst_level_loose_acc"]
