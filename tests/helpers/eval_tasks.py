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
