"""What every evaluation task shares (chipadapt.protocols.EvalTask): it needs a causal LM unless it
says otherwise, and has no per-item records until `run` leaves them in `items`."""


class TaskBase:
    needs_model: bool = True
    items: list[dict] | None = None

    def run(self, model, tokenizer) -> dict:
        raise NotImplementedError
