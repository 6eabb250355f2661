"""Merge two Hugging Face folders (ChipAlign or a baseline), sweepable like training:

python merge.py merge=chipalign merge.lam=0.6 models.chip=DAPT_FOLDER models.instruct=INSTRUCT_FOLDER output=OUT
python merge.py -m merge.lam=0,0.2,0.4,0.6,0.8,1 models.chip=... models.instruct=...
python merge.py config=recipe.yml          # a mergekit config (slerp, linear, task_arithmetic, ties, della, chipalign)
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "merge", "chipadapt.merge.run:run")

if __name__ == "__main__":
    from chipadapt.merge.mergekit_config import expand_argv_or_exit

    expand_argv_or_exit()  # config=recipe.yml (a mergekit config) -> the overrides of the same merge
    main()
