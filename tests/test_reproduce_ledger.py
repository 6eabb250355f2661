"""The reproduction's ledger: a step resumed across interruptions reports the time of all its segments."""

from chipadapt.reproduce.ledger import Ledger


def test_an_interrupted_step_that_resumes_adds_up_its_segments(tmp_path):
    path, log = tmp_path / "steps.json", tmp_path / "sft.log"
    ledger = Ledger(path)
    ledger.start("sft", ["train.py", "stage=sft"], log)
    ledger.finish("sft", "interrupted", 100.0, -15)
    ledger.start("sft", ["train.py", "stage=sft"], log)  # killed: no record of this segment's time
    ledger = Ledger(path)
    ledger.start("sft", ["train.py", "stage=sft"], log)
    ledger.finish("sft", "completed", 30.0, 0)
    record = Ledger(path).records["sft"]
    assert (record["seconds"], record["segments"], record["status"]) == (130.0, 3, "completed")
    # A completed step run again, or one whose command changed, starts its count afresh.
    ledger.start("sft", ["train.py", "stage=sft"], log)
    ledger.finish("sft", "interrupted", 5.0, -2)
    ledger.start("sft", ["train.py", "stage=sft", "optim.lr=1e-4"], log)
    ledger.finish("sft", "completed", 7.0, 0)
    assert (ledger.records["sft"]["seconds"], ledger.records["sft"]["segments"]) == (7.0, 1)
