"""Evaluation presets: whose conventions a task follows (`preset=chipadapt|lm_eval`).

`chipadapt` is the project's own format, sized for a CPU. `lm_eval` reproduces lm-evaluation-harness
0.4.13 (its `mmlu`, `mmlu_continuation` and `ifeval` task YAMLs and its HF backend), so a score
can be set beside published lm-eval numbers; tests/test_lm_eval_agreement.py checks it item by item.
"""

from chipadapt.errors import ChipadaptError

PRESETS = ("chipadapt", "lm_eval")

# IFEval answer length: lm-eval's `max_gen_toks: 1280`. chipadapt's 256 is sized so that all 541 prompts
# run in about ten minutes for the 135M model on 2 CPU cores (512 took over 13; experiments/LOG.md).
IFEVAL_MAX_NEW_TOKENS = {"chipadapt": 256, "lm_eval": 1280}

LETTERS = "ABCDEFGHIJ"


def check_preset(preset: str, key: str) -> str:
    if preset not in PRESETS:
        raise ChipadaptError(f"{key}: {preset!r} is not one of {', '.join(PRESETS)}")
    return preset


def adds_special_tokens(preset: str) -> bool:
    """lm-eval's HF backend lets the tokenizer add its BOS (unless the text starts with it); chipadapt adds none."""
    return preset == "lm_eval"


def mmlu_description(subject: str | None, style: str) -> str:
    """lm-eval's per-subject `description`, written once before the shots and the question."""
    if not subject:
        return ""
    kind = "multiple choice questions" if style == "letters" else "questions"
    return f"The following are {kind} (with answers) about {subject.replace('_', ' ')}.\n\n"


def mmlu_question(row: dict, style: str) -> str:
    """lm-eval's `doc_to_text`: mmlu (letters) or mmlu_continuation (cloze)."""
    if style == "letters":
        return (
            row["question"].strip()
            + "\n"
            + "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(row["choices"]))
            + "Answer:"
        )
    return f"Question: {row['question'].strip()}\nAnswer:"


def subject_shots(row: dict, shots: list[dict], num_fewshot: int) -> list[dict]:
    """The first `num_fewshot` dev questions of the question's own subject (lm-eval's `first_n`
    sampler over the subject's dev split)."""
    return [s for s in shots if s.get("subject") == row.get("subject")][:num_fewshot]


def mmlu_context(row: dict, shots: list[dict], num_fewshot: int, style: str) -> str:
    """Description, the subject's shots (`subject_shots`) with their answers, then the question."""
    same = subject_shots(row, shots, num_fewshot)
    examples = "".join(mmlu_question(s, style) + " " + mmlu_choice(s, int(s["answer"]), style) + "\n\n" for s in same)
    return mmlu_description(row.get("subject"), style) + examples + mmlu_question(row, style)


def mmlu_choice(row: dict, index: int, style: str) -> str:
    return LETTERS[index] if style == "letters" else str(row["choices"][index])
