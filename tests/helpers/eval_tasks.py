"""Evaluation tasks that count their runs, for the resume tests (evaluate_folder builds them by _target_)."""

RUNS: list[str] = []


class CountingTask:
    """Scores nothing; records each run in RUNS and fails when told to (a kill mid-evaluation)."""

    def __init__(self, name: str, needs_model: bool = False, limit: int = 2, fail: bool = False, path: str = ""):
        self.name, self.needs_model, self.limit, self.fail, self.path = name, needs_model, limit, fail, path
        self.items = None

    def run(self, model, tokenizer) -> dict:
        if self.fail:
            raise RuntimeError(f"{self.name}: stopped")
        RUNS.append(self.name)
        self.items = [{"id": str(i), "scores": {"acc": 1.0}} for i in range(self.limit)]
        return {"acc": 1.0, "acc_n": self.limit}


class AnsweringTask:
    """Generates an answer per prompt and scores each (context, continuation) pair with the model, through
    the tasks' shared plumbing (eval/scoring.py), for the tests of answers kept across a kill."""

    needs_model = True

    def __init__(self, prompts: list[str], pairs: list[list[str]], max_new_tokens: int = 6):
        self.prompts, self.pairs, self.max_new_tokens = list(prompts), [tuple(p) for p in pairs], max_new_tokens
        self.items = None

    def run(self, model, tokenizer) -> dict:
        from chipadapt.eval.scoring import continuation_logprobs, generate

        answers = generate(model, tokenizer, self.prompts, 2, self.max_new_tokens, chat=False)
        logprobs = continuation_logprobs(model, tokenizer, self.pairs, 1, 64)
        self.items = [{"id": str(i), "prediction": a, "scores": {"n": 1.0}} for i, a in enumerate(answers)]
        return {"answers": answers, "logprobs": logprobs}
