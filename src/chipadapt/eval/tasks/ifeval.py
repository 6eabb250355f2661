"""`ifeval`: IFEval's verifiable instructions, checked by the maintained `if-verifiable` package.

Prompt-level (all instructions of a prompt followed) and instruction-level accuracy, strict and
loose. NLTK's Punkt data comes from a path (`nltk_data`), never downloaded.
"""

import json
import os
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.scoring import generate


class IFEvalTask:
    def __init__(self, path: str, nltk_data: str, limit: int | None, max_new_tokens: int, batch_size: int):
        self.path, self.nltk_data = Path(path), nltk_data
        self.limit, self.max_new_tokens, self.batch_size = limit, max_new_tokens, batch_size

    def run(self, model, tokenizer) -> dict[str, float]:
        if not self.path.is_file():
            raise ChipadaptError(f"eval.ifeval.path: {self.path} does not exist")
        os.environ["NLTK_DATA"] = self.nltk_data  # read by nltk when the checkers import it
        from if_verifiable import IFEvalSample, evaluate_output_for_sample

        rows = [json.loads(line) for line in self.path.open() if line.strip()][: self.limit]
        responses = generate(model, tokenizer, [r["prompt"] for r in rows], self.batch_size, self.max_new_tokens, chat=True)
        prompt_strict = prompt_loose = inst_strict = inst_loose = instructions = 0
        for row, response in zip(rows, responses):
            sample = IFEvalSample(key=row["key"], prompt=row["prompt"], instruction_id_list=row["instruction_id_list"], kwargs=row["kwargs"])
            checks, scores = evaluate_output_for_sample("ifeval", sample, response)
            prompt_strict += scores.binary_strict
            prompt_loose += scores.binary_loose
            inst_strict += sum(c.strict_pass for c in checks)
            inst_loose += sum(c.loose_pass for c in checks)
            instructions += len(checks)
        n = max(len(rows), 1)
        return {
            "prompt_strict": prompt_strict / n, "prompt_loose": prompt_loose / n,
            "instruction_strict": inst_strict / max(instructions, 1), "instruction_loose": inst_loose / max(instructions, 1),
            "prompts": len(rows),
        }
