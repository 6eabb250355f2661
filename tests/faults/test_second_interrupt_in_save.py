"""A second Ctrl-C that lands inside the checkpoint save the first one asked for is an interruption like
the first: one line, exit status 130, manifest `interrupted`. torch's zip writer, cut short by it,
raised `RuntimeError: unexpected pos` from its clean-up, and the job ended in two chained tracebacks,
exit 1 and `failed`. The checkpoint before it stays whole, and no temporary file is left."""

import io
import signal

import pytest
import torch
from conftest import TINY_FAST, read_manifest
from helpers.faults import run_entry

from chipadapt import interrupts


class InterruptedMidway(io.RawIOBase):
    """A file whose writes raise what our handler raises for a signal, once part of the data is written."""

    def __init__(self, after: int):
        self.buffer, self.after = io.BytesIO(), after

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.buffer.tell() > self.after:
            raise interrupts.Interrupted(signal.SIGINT)
        return self.buffer.write(data)


def test_an_error_raised_while_an_interruption_unwinds_is_that_interruption():
    with pytest.raises(RuntimeError, match="unexpected pos"):  # what torch.save makes of it
        torch.save({"w": torch.zeros(10_000)}, InterruptedMidway(after=1000))
    with pytest.raises(interrupts.Interrupted) as stopped, interrupts.unmasked():
        torch.save({"w": torch.zeros(10_000)}, InterruptedMidway(after=1000))
    assert stopped.value.exit_status == 130
    with pytest.raises(RuntimeError, match="unrelated"), interrupts.unmasked():  # other errors are left as they are
        raise RuntimeError("unrelated")


def test_a_second_ctrl_c_during_the_checkpoint_save_stops_in_one_line(tmp_path):
    run = tmp_path / "run"
    args = [
        *TINY_FAST,
        "trainer.max_steps=5",
        "callbacks.checkpoint.every_n_train_steps=1",  # step 1's checkpoint is there when step 2's save is cut
        "+callbacks.twice._target_=helpers.save_signal.SignalTwiceAcrossSave",
        "+callbacks.twice.step=2",
        f"hydra.run.dir={run}",
    ]
    stopped = run_entry("train.py", args, env={"PYTHONPATH": "tests"})
    assert "sending SIGINT during the checkpoint save" in stopped.stderr  # the save was cut, as meant
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "unexpected pos" not in stopped.stderr, stopped.stderr[-3000:]
    assert [line for line in stopped.stderr.splitlines() if line.startswith("chipadapt: interrupted")]
    assert read_manifest(run)["status"] == "interrupted"
    checkpoints = run / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["last.ckpt"]  # the cut save's temporary file is gone
    assert torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 1
