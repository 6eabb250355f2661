"""`ifeval`: IFEval's verifiable instructions, checked by the maintained `if-verifiable` package.

Prompt-level (all instructions of a prompt followed) and instruction-level accuracy, strict and
loose. NLTK's Punkt data comes from a path (`nltk_data`), never downloaded. Every response and its
per-instruction verdicts go to `ifeval_predictions.jsonl` in the run folder, so a score can be read back.
"""

import json
import os
import random
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.scoring import generate
from chipadapt.io.atomic import write_text_atomic


class IFEvalTask:
    def __init__(self, path: str, nltk_data: str, limit: int | None, max_new_tokens: int, batch_size: int, output_dir: str):
        self.path, self.nltk_data = Path(path), nltk_data
        self.limit, self.max_new_tokens, self.batch_size = limit, max_new_tokens, batch_size
        self.output_dir = Path(output_dir)

    def run(self, model, tokenizer) -> dict[str, float]:
        if not self.path.is_file():
            raise ChipadaptError(f"eval.ifeval.path: {self.path} does not exist")
        os.environ["NLTK_DATA"] = self.nltk_data  # read by nltk when the checkers import it
        from if_verifiable import IFEvalSample, evaluate_output_for_sample

        rows = [json.loads(line) for line in self.path.open() if line.strip()][: self.limit]
        responses = generate(model, tokenizer, [r["prompt"] for r in rows], self.batch_size, self.max_new_tokens, chat=True)
        prompt_strict = prompt_loose = inst_strict = inst_loose = instructions = 0
        records = []
        # Where a record gives an argument its checker rejects (keys 1122 and 1129 ask for the letter "#"),
        # the checker draws one from Python's global `random`: seeded per prompt, the same response always
        # gets the same verdict, whatever ran before it in the process. The caller's random state is kept.
        caller_state = random.getstate()
        try:
            for row, response in zip(rows, responses):
                random.seed(row["key"])
                sample = IFEvalSample(key=row["key"], prompt=row["prompt"], instruction_id_list=row["instruction_id_list"], kwargs=row["kwargs"])
                checks, scores = evaluate_output_for_sample("ifeval", sample, response)
                # An empty response comes back with no checks at all: its instructions count as failed,
                # not as absent, or a model that says nothing would raise its instruction-level score.
                failed = [False] * len(row["instruction_id_list"])
                strict = [bool(c.strict_pass) for c in checks] or failed
                loose = [bool(c.loose_pass) for c in checks] or failed
                prompt_strict += scores.binary_strict
                prompt_loose += scores.binary_loose
                inst_strict += sum(strict)
                inst_loose += sum(loose)
                instructions += len(strict)
                records.append({"key": row["key"], "prompt": row["prompt"], "response": response,
                                "instructions": row["instruction_id_list"], "strict": strict, "loose": loose})
        finally:
            random.setstate(caller_state)
        write_text_atomic(self.output_dir / "ifeval_predictions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        n = max(len(rows), 1)
        return {
            "prompt_strict": prompt_strict / n, "prompt_loose": prompt_loose / n,
            "instruction_strict": inst_strict / max(instructions, 1), "instruction_loose": inst_loose / max(instructions, 1),
            "prompts": len(rows),
        }
