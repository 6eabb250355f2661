"""Benchmarks take train.py's config tree, with Hydra overrides from the command line."""

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import chipadapt  # noqa: F401  (resolvers)
from chipadapt.cli import in_one_line

ROOT = Path(__file__).resolve().parents[1]


def benchmark_config(defaults: list[str], output_dir: str):
    """Compose conf/train.yaml with the benchmark's defaults, then the user's overrides on top; a bad
    override is one `chipadapt: error:` line, exit status 2, as in train.py."""
    overrides = [*defaults, f"paths.output_dir={output_dir}", *sys.argv[1:]]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return in_one_line(lambda: compose("train", overrides=overrides))
