"""`ifeval`: IFEval's verifiable instructions, checked by the maintained `if-verifiable` package.

Prompt-level (all instructions of a prompt followed) and instruction-level accuracy, strict and
loose. NLTK's Punkt data comes from a path (`nltk_data`), never downloaded. Every response and its
per-instruction verdicts are the task's items (`ifeval_items.jsonl` in the run folder), so a score can
be read back; instruction-level scores are {passed, of} per prompt, so their interval resamples prompts.
"""

import difflib
import os
import random
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize
from chipadapt.eval.presets import IFEVAL_MAX_NEW_TOKENS, adds_special_tokens, check_preset
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.jsonl import jsonl_records

LIST_COMMAND = "python -m chipadapt.eval.tasks.ifeval"


def known_instruction_ids() -> list[str]:
    """The instruction ids the checker verifies (importing its registry imports nltk, not its data)."""
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return sorted(INSTRUCTION_DICT)


def unknown_instruction(instruction_id, known: list[str]) -> str:
    """The error for an id the checker does not know: it would skip it and the prompt would fail."""
    near = difflib.get_close_matches(str(instruction_id), known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown instruction id {instruction_id!r}{hint}; `{LIST_COMMAND}` lists the {len(known)} known ids"


def read_ifeval(path: str) -> list[dict]:
    """IFEval's input records, each checked before any generation (a bad one would fail after it)."""
    known = known_instruction_ids()
    rows = []
    for lineno, row in jsonl_records(path, missing=f"eval.ifeval.path: {path} does not exist"):
        if not (
            "key" in row
            and isinstance(row.get("prompt"), str)
            and isinstance(row.get("instruction_id_list"), list)
            and isinstance(row.get("kwargs"), list)
            and len(row["kwargs"]) == len(row["instruction_id_list"])
        ):
            raise ChipadaptError(
                f"{path}:{lineno}: an IFEval record needs 'key', a string 'prompt', and lists "
                "'instruction_id_list' and 'kwargs' of the same length"
            )
        if not row["instruction_id_list"]:  # nothing to follow: every response would pass
            raise ChipadaptError(f"{path}:{lineno}: 'instruction_id_list' is empty")
        for instruction_id in row["instruction_id_list"]:
            if instruction_id not in known:
                raise ChipadaptError(f"{path}:{lineno}: {unknown_instruction(instruction_id, known)}")
        if not all(isinstance(kwargs, dict) for kwargs in row["kwargs"]):
            raise ChipadaptError(f"{path}:{lineno}: each entry of 'kwargs' must be an object ({{}} for none)")
        rows.append(row)
    if not rows:  # a score over no prompts is no score
        raise ChipadaptError(f"eval.ifeval.path: {path} holds no prompts")
    return rows


class IFEvalTask(TaskBase):
    def __init__(
        self,
        path: str,
        nltk_data: str,
        limit: int | None,
        max_new_tokens: int | None,
        batch_size: int,
        preset: str,
        chat: bool,
    ):
        self.path, self.nltk_data = Path(path), nltk_data
        self.preset = check_preset(preset, "eval.ifeval.preset")
        # null: the preset's answer length (lm_eval: lm-eval's max_gen_toks, 1280).
        self.max_new_tokens = max_new_tokens if max_new_tokens is not None else IFEVAL_MAX_NEW_TOKENS[self.preset]
        self.limit, self.batch_size, self.chat = limit, batch_size, chat
        # Read now: evaluate.py builds every task before loading the model, so a bad record stops the
        # run before any task generates.
        self.rows = read_ifeval(self.path)[:limit]
        if not self.rows:
            raise ChipadaptError(f"eval.ifeval: no prompts left of {path} (limit={limit})")

    def run(self, model, tokenizer) -> dict[str, float]:
        os.environ["NLTK_DATA"] = self.nltk_data  # read by nltk when the checkers import it
        import nltk

        # ... unless nltk is imported already (rouge_score, which ROUGE-L tasks load, imports it): then
        # only its path list counts.
        if self.nltk_data not in nltk.data.path:
            nltk.data.path.insert(0, self.nltk_data)
        from if_verifiable import IFEvalSample, evaluate_output_for_sample

        rows = self.rows
        responses = generate(
            model,
            tokenizer,
            [r["prompt"] for r in rows],
            self.batch_size,
            self.max_new_tokens,
            chat=self.chat,
            add_special_tokens=adds_special_tokens(self.preset),
            progress="ifeval",
        )
        items = []
        # Where a record gives an argument its checker rejects (keys 1122 and 1129 ask for the letter "#"),
        # the checker draws one from Python's global `random`: seeded per prompt, the same response always
        # gets the same verdict, whatever ran before it in the process. The caller's random state is kept.
        caller_state = random.getstate()
        try:
            for row, response in zip(rows, responses):
                random.seed(row["key"])
                sample = IFEvalSample(
                    key=row["key"],
                    prompt=row["prompt"],
                    instruction_id_list=row["instruction_id_list"],
                    kwargs=row["kwargs"],
                )
                checks, scores = evaluate_output_for_sample("ifeval", sample, response)
                # An empty response comes back with no checks at all: its instructions count as failed,
                # not as absent, or a model that says nothing would raise its instruction-level score.
                failed = [False] * len(row["instruction_id_list"])
                strict = [bool(c.strict_pass) for c in checks] or failed
                loose = [bool(c.loose_pass) for c in checks] or failed
                items.append(
                    {
                        "id": str(row["key"]),
                        "prediction": response,
                        "reference": row["instruction_id_list"],
                        "scores": {
                            "prompt_strict": bool(scores.binary_strict),
                            "prompt_loose": bool(scores.binary_loose),
                            "instruction_strict": {"num": sum(strict), "den": len(strict)},
                            "instruction_loose": {"num": sum(loose), "den": len(loose)},
                        },
                        "prompt": row["prompt"],
                        "kwargs": row["kwargs"],
                        "strict": strict,
                        "loose": loose,
                    }
                )
        finally:
            random.setstate(caller_state)
        self.items = items
        return {
            **summarize(items),
            "prompts": len(rows),
            "preset": self.preset,
            "max_new_tokens": self.max_new_tokens,
            "chat": self.chat,
        }


def main() -> None:
    """Print the instruction ids an IFEval record may name, one per line."""
    print("\n".join(known_instruction_ids()))


if __name__ == "__main__":
    main()
