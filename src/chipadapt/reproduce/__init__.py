"""`python reproduce.py`: the ChipNeMo and ChipAlign findings at small scale, end to end.

The reproduction is a list of steps in `conf/reproduce.yaml` (sizes in `conf/variant/`), each one
run of train.py, evaluate.py or merge.py into its own folder; `runner` runs what is not done yet
(`step_process` runs each step, `rebuild` retrains a restored step's missing model),
`report` turns the folders into REPORT.md with tables and plots.
"""
