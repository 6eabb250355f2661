"""`ifeval`: IFEval's verifiable instructions, checked by the maintained `if-verifiable` package.

Prompt-level (all instructions of a prompt followed) and instruction-level accuracy, strict and
loose. NLTK's Punkt data comes from a path (`nltk_data`), never downloaded. Every response and its
per-instruction verdicts are the task's items (`ifeval_items.jsonl` in the run folder), so a score can
be read back; instruction-level scores are {passed, of} per prompt, so their interval resamples prompts.
"""

import difflib
import inspect
import os
import random
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize
from chipadapt.eval.presets import IFEVAL_MAX_NEW_TOKENS, adds_special_tokens, check_preset
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.jsonl import FirstLines, jsonl_records
from chipadapt.models.text_generation import uses_chat_template

LIST_COMMAND = "python -m chipadapt.eval.tasks.ifeval"
# The value each checker argument takes, as the checkers' docstrings give it: a misspelt or mistyped one
# would otherwise fail only after generation, or be replaced by a random draw. Arguments not named here
# (a later version of the checker) are checked by name and by building the checker.
WHOLE_NUMBER_ARGS = (
    "num_sentences",
    "num_placeholders",
    "num_bullets",
    "num_highlights",
    "num_sections",
    "num_paragraphs",
    "nth_paragraph",
    "num_words",
    "frequency",
    "let_frequency",
    "capital_frequency",
)
RELATION_ARGS = ("relation", "let_relation", "capital_relation")
WORD_LIST_ARGS = ("keywords", "forbidden_words")
TEXT_ARGS = (
    "language",
    "section_spliter",
    "postscript_marker",
    "keyword",
    "letter",
    "first_word",
    "prompt_to_repeat",
    "end_phrase",
)


def known_instruction_ids() -> list[str]:
    """The instruction ids the checker verifies (importing its registry imports nltk, not its data)."""
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return sorted(INSTRUCTION_DICT)


def unknown_instruction(instruction_id, known: list[str]) -> str:
    """The error for an id the checker does not know: it would skip it and the prompt would fail."""
    near = difflib.get_close_matches(str(instruction_id), known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown instruction id {instruction_id!r}{hint}; `{LIST_COMMAND}` lists the {len(known)} known ids"


def kwargs_problem(instruction_id: str, kwargs: dict, prompt: str) -> str | None:
    """What is wrong with one instruction's kwargs, in words (None: nothing): an argument its checker's
    `build_description` does not take, a value of the wrong kind, or one the checker itself rejects."""
    from if_verifiable.ifeval.instructions import _COMPARISON_RELATION
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    checker_class = INSTRUCTION_DICT[instruction_id]
    accepted = [name for name in inspect.signature(checker_class.build_description).parameters if name != "self"]
    given = {name: value for name, value in kwargs.items() if value is not None}  # the checker drops nulls too
    for name, value in given.items():
        if name not in accepted:
            takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
            near = difflib.get_close_matches(name, accepted, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            return f"{name!r} is not an argument of {instruction_id!r} ({takes}){hint}"
        if name in RELATION_ARGS and value not in _COMPARISON_RELATION:
            choices = ", ".join(map(repr, _COMPARISON_RELATION))
            return f"{name} {value!r} of {instruction_id!r} is not one of {choices}"
        if name in WHOLE_NUMBER_ARGS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{name} {value!r} of {instruction_id!r} is not a whole number"
        if name in WORD_LIST_ARGS and not (isinstance(value, list) and all(isinstance(w, str) for w in value)):
            return f"{name} {value!r} of {instruction_id!r} is not a list of strings"
        if name in TEXT_ARGS and not isinstance(value, str):
            return f"{name} {value!r} of {instruction_id!r} is not a string"
    # Built as the scorer builds it (if_verifiable.common.evaluate_instructions); a checker may draw a
    # missing argument from Python's global random, whose state the caller keeps.
    state = random.getstate()
    try:
        checker = checker_class(instruction_id)
        checker.build_description(**given)
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
    except Exception as err:  # noqa: BLE001 (the checker's own refusal of the record's arguments, whatever its kind)
        return f"the checker of {instruction_id!r} rejects its kwargs {given}: {type(err).__name__}: {err}"
    finally:
        random.setstate(state)
    return None


def read_ifeval(path: str) -> list[dict]:
    """IFEval's input records, each checked before any generation (a bad one would fail after it)."""
    known = known_instruction_ids()
    keys = FirstLines(path, "key")
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
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            if problem := kwargs_problem(instruction_id, kwargs, row["prompt"]):
                raise ChipadaptError(f"{path}:{lineno}: kwargs: {problem}")
        keys.check(row["key"], lineno)
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

    def inputs(self) -> list[tuple[str, str]]:
        return [("path", str(self.path)), ("nltk_data", self.nltk_data)]

    def run(self, model, tokenizer) -> dict[str, float]:
        os.environ["NLTK_DATA"] = self.nltk_data  # read by nltk when the checkers import it
        import nltk

        # ... unless nltk is imported already (rouge_score, which ROUGE-L tasks load, imports it): then
        # only its path list counts.
        if self.nltk_data not in nltk.data.path:
            nltk.data.path.insert(0, self.nltk_data)
        from if_verifiable import IFEvalSample, evaluate_output_for_sample

        rows = self.rows
        chat = uses_chat_template(tokenizer, self.chat)
        responses = generate(
            model,
            tokenizer,
            [r["prompt"] for r in rows],
            self.batch_size,
            self.max_new_tokens,
            chat=chat,
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
            # What was used, not what was asked: a tokenizer with no chat template gets raw prompts.
            "chat": chat,
            **({"chat_asked": "no template: raw prompts"} if self.chat and not chat else {}),
        }


def main() -> None:
    """Print the instruction ids an IFEval record may name, one per line."""
    print("\n".join(known_instruction_ids()))


if __name__ == "__main__":
    main()
