"""Figures a training stage measures after its Trainer is done (the retriever stage's comparison of
encoders on held-out queries), sent to the Trainer's loggers: without them a search's objective
(`retrieval.synthetic_heldout.finetuned.mrr@10`) was only in results.json, and TensorBoard, metrics.csv
and the W&B summary held the validation alone."""


def log_final_figures(loggers, figures: dict[str, float], step: int) -> None:
    """`figures` ({name: value}, named as run_metrics names them) at the run's last step, written out at
    once: Lightning finalized these loggers when its last `fit` or `validate` ended. A TensorBoard logger
    takes its `hp_metric` from them when the job ends (loggers/tensorboard.py)."""
    if not figures:
        return
    for logger in loggers:
        logger.log_metrics(figures, step=step)
        logger.finalize("success")
