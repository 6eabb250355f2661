"""Reproduce ChipNeMo's and ChipAlign's findings at small scale, end to end, into one report:

python reproduce.py                   # full variant (a few hours on 2 CPU cores)
python reproduce.py variant=fast      # under 20 minutes
python reproduce.py only=[report]     # rebuild experiments/reports/<date>/REPORT.md from the run folders
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "reproduce", "chipadapt.reproduce.run:run")

if __name__ == "__main__":
    main()
