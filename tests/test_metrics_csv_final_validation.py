"""A run trained longer in its folder (`overwrite=true trainer.max_steps=...` after it finished) keeps
the finished run's final validation: Lightning validated the checkpoint's own weights at its step, after
saving it, and the resumed run does not validate them again; only what the attempt logged past the
checkpoint (the next step's training and lr rows) is replayed and so dropped."""

import csv

from chipadapt.loggers.csv import AppendingCSVLogger

HEADER = "epoch,lr-AdamW/pg1,step,train/loss,val/domain/bpb\r\n"
# A finished 3-step run: lr and training rows for steps 0-2, its final validation at step 3.
FINISHED = [",5e-06,0,,", "0,,0,6.24,", ",5e-06,1,,", "0,,1,6.23,", ",5e-06,2,,", "0,,2,6.22,", "1,,3,,2.1628"]


def rows_after_resume(folder, earlier: list[str], start: int) -> list[dict]:
    folder.mkdir()
    (folder / "metrics.csv").write_text(HEADER + "".join(row + "\r\n" for row in earlier))
    logger = AppendingCSVLogger(save_dir=str(folder), name="", version="")
    logger.start_at(start)
    logger.log_metrics({"train/loss": 6.21}, step=start)  # the resumed run's fourth step
    logger.save()
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_finished_runs_final_validation_stays_when_it_is_trained_longer(tmp_path):
    rows = rows_after_resume(tmp_path / "longer", FINISHED, start=3)
    assert [(r["step"], r["val/domain/bpb"]) for r in rows if r["val/domain/bpb"]] == [("3", "2.1628")]
    assert [r["train/loss"] for r in rows if r["step"] == "3" and r["train/loss"]] == ["6.21"]  # once


def test_rows_an_attempt_logged_at_the_checkpoints_step_other_than_its_validation_go(tmp_path):
    # Killed after step 3's training and lr rows were logged: they are replayed, so they go; the
    # validation row of step 3 stays, and a row with validation and training figures together goes.
    earlier = [*FINISHED, ",5e-06,3,,", "1,,3,6.20,", "1,,3,6.19,2.5"]
    rows = rows_after_resume(tmp_path / "killed", earlier, start=3)
    at_three = [(r["lr-AdamW/pg1"], r["train/loss"], r["val/domain/bpb"]) for r in rows if r["step"] == "3"]
    assert at_three == [("", "", "2.1628"), ("", "6.21", "")]
