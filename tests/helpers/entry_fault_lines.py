"""Several refused command lines of one entry point, run one after the other in one fresh process
(helpers/command_lines.py, as a job script runs them): each fresh `python train.py` spent 5-8 CPU-s importing
before its one line. Each line's exit status and output come back as the CompletedProcess its own process
would give, for helpers.faults.assert_user_error (its stderr: what the process printed while that line ran)."""

import os
import re
import subprocess
import sys

from helpers.faults import ROOT


def refused_lines(script: str, lines: list[list[str]], timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """One CompletedProcess per command line of `script` (e.g. `train.py`), in order."""
    args = [arg for number, line in enumerate(lines) for arg in ([*line] if number == 0 else ["---", *line])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    # stderr into stdout: the `command line N: exit S` markers then split what each line printed.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "command_lines.py"), script, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    parts = re.split(r"^command line (\d+): exit (-?\d+)\n", proc.stdout, flags=re.M)
    told, ends = parts[0::3], list(zip(parts[1::3], parts[2::3], strict=True))
    assert [int(number) for number, _ in ends] == list(range(1, len(lines) + 1)), proc.stdout[-3000:]
    # What came after the last line's marker (the process's exit: atexit, "Exception ignored in ...") was in
    # that line's own process's stderr: it goes with the last line.
    told = [*told[:-2], told[-2] + told[-1]]
    return [
        subprocess.CompletedProcess([script, *line], int(status), "", output)
        for line, (_, status), output in zip(lines, ends, told, strict=True)
    ]
