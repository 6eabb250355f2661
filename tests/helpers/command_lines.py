"""Several command lines of one entry point run one after the other in one Python process, as a job script runs
them (one process each): for tests of where each line's run goes, which Hydra decides from the line alone, each
fresh process spent seconds importing. Prints `command line N: exit S` for each line on stdout.

    python tests/helpers/command_lines.py evaluate.py ARGS... --- ARGS... --- ARGS..."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def entry_main(script: str):
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def split_lines(args: list[str]) -> list[list[str]]:
    lines = [[]]
    for arg in args:
        if arg == "---":
            lines.append([])
        else:
            lines[-1].append(arg)
    return lines


def main() -> None:
    from hydra.core.global_hydra import GlobalHydra

    script, *args = sys.argv[1:]
    launch = entry_main(script)
    for number, line in enumerate(split_lines(args), start=1):
        GlobalHydra.instance().clear()  # Hydra keeps the last command's instance
        sys.argv = [str(ROOT / script), *line]
        try:
            launch()
            status = 0
        except SystemExit as stop:
            # As Python exits: sys.exit() is 0, an int is itself, anything else (a message) is 1.
            status = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        print(f"command line {number}: exit {status}", flush=True)


if __name__ == "__main__":
    main()
