"""Evaluate one model folder on the tasks chosen by `eval=[...]`:

python evaluate.py model.path=FOLDER eval=[perplexity,mcq,ifeval] hydra.run.dir=DIR   # DIR/results.json
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "evaluate", "chipadapt.eval.run:run")

if __name__ == "__main__":
    main()
