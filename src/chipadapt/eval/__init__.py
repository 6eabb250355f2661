"""Evaluation tasks, each one file with a `run(model, tokenizer) -> {metric: value}` task object."""
