"""Compare many evaluation results in one table and plot:

python compare.py 'runs=[multirun/2026-11-23/10-00-00/*]' 'metrics=[ifeval.prompt_loose,perplexity.domain.bpb]'
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "compare", "chipadapt.eval.compare:compare")

if __name__ == "__main__":
    main()
