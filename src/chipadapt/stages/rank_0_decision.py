"""Rank 0's answer to whether a distributed run resumes, taken by every other process. Each process used to
decide for itself, but the answer reads the folder as rank 0 found it (its last manifest, its lock): a process
started after rank 0 took the folder's lock and replaced its manifest read another folder and decided another
thing (rank 0 completing a stopped attempt from last.ckpt, the others starting over), and the processes hung
or trained apart.

Rank 0 hands its answer on in the environment, which the processes Lightning starts (trainer.devices=N) inherit,
and, where a launcher started several processes (torchrun, srun), in a file beside the checkpoints that they wait
for. The file is written once rank 0 holds the run folder's lock, and names the lock as rank 0 took it (its pid, the
lock file's inode and time of change, a random nonce); another process takes it only while that lock is held so.
The launcher's variables could not tell the launches apart (torchrun with a fixed --master_port gives every launch
the same TORCHELASTIC_RUN_ID=none, RESTART_COUNT=0, MASTER_ADDR and PORT): the answer an earlier launch left was
taken for this one's, one process resumed while another started over, and they hung. Rank 0 removes the file when
its job ends, or, failing after it answered (out of memory while loading the model), replaces it with that failure's
line, with which the others stop at once; a kill leaves it, which the lock check sets aside.

Where rank 0 refuses the run before it answers (the output folder, a folder in use, a resume with other settings),
it writes the refusal's line instead, which the other processes stop with at once: they waited out WAIT_S and
blamed rank 0's silence. A refusal comes before the lock, so it is taken only when it was written during this
process's life by a launch with this process's launcher variables, or by the same command in a task of the same SLURM
job step (whose job, step and restart count name one launch of the step's command, whenever its tasks start: a node
that starts its container late). The command line tells apart the commands one step runs one after another (`srun -n2
bash -c 'train.py out=X; train.py out=X overwrite=true'`); the same command run twice in one step does not differ in
anything, and a task of the second run that starts after the first run's rank 0 refused stops with that refusal.
An answer of this launch whose writer no longer holds the folder's lock is rank 0 ended (killed, or failed while the
others had not joined): the others stop with it at once as well.

Processes started by hand (NODE_RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT exported) have nothing
that names their launch: an answer written before such a process started may be an earlier launch's, and is named
while it waits, not taken."""

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.command_line import launch_command
from chipadapt.io.launch_ranks import several_processes_launched
from chipadapt.io.lock import LOCK_NAME
from chipadapt.io.lock_probe import folder_lock_held

log = logging.getLogger(__name__)
DECISION_VARIABLE = "CHIPADAPT_RANK_0_RESUMES"
DECISION_FILE = ".rank_0_resumes.json"
# Set alike in every process of one launch: a refusal of another launch (another SLURM step, a requeue) is set
# aside by them; one of an earlier torchrun launch on the same port by its time.
LAUNCH_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_RESTART_COUNT",
)
# How long a process waits for rank 0's answer: rank 0 answers before it loads the model or the data.
WAIT_S = 600.0
POLL_S = 0.5
# Clocks of two nodes (or of a node and its file server) differ a little.
CLOCK_SLACK_S = 2.0
# Slurm's own steps (the batch script, the extern and interactive steps) have ids from here up; one launched by
# srun has a number below.
SLURM_SPECIAL_STEPS = 0xFFFFFFF0


def launch() -> dict:
    return {key: os.environ[key] for key in LAUNCH_VARIABLES if os.environ.get(key)}


def _lock_as_held(out: Path) -> dict | None:
    """The run folder's lock file as its holder left it: its holder writes its pid there when it takes it."""
    try:
        stat = os.stat(out / LOCK_NAME)
        holder = json.loads((out / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return None
    return {"inode": stat.st_ino, "changed_ns": stat.st_mtime_ns, "pid": holder.get("pid")}


def _process_started() -> float:
    """When this process started (Linux: its start time in clock ticks after boot), else when this module was
    imported."""
    try:
        fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return int(boot.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


_IMPORTED = time.time()


def _record(out: Path, answer: dict) -> None:
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / "checkpoints" / DECISION_FILE,
        {
            **answer,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "nonce": secrets.token_hex(8),
            "launch": launch(),
            "command": launch_command(),
        },
    )


def record_rank_0_decision(out: Path, checkpoint: str | None) -> None:
    """Rank 0, holding the run folder's lock, once it has decided: `checkpoint` resumed, or None (from step 0)."""
    os.environ[DECISION_VARIABLE] = json.dumps({"folder": str(out.resolve()), "checkpoint": checkpoint})
    if several_processes_launched():
        _record(out, {"checkpoint": checkpoint, "lock": _lock_as_held(out), "written": time.time()})


def forget_rank_0_decision(out: Path) -> None:
    """Rank 0, when its job ends: the answer is this job's alone."""
    os.environ.pop(DECISION_VARIABLE, None)
    path = out / "checkpoints" / DECISION_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if (
        isinstance(recorded, dict)
        and recorded.get("pid") == os.getpid()
        and recorded.get("host") == socket.gethostname()
    ):
        path.unlink(missing_ok=True)


@contextmanager
def rank_0_answers(out: Path, trains: bool) -> Iterator[Callable[[str | None], None]]:
    """Rank 0's job: `answer(checkpoint)` once it holds the folder's lock; a refusal raised before it answered is
    written for the other processes; the answer is removed when the job ends, or replaced with the failure's line
    where the job fails after answering (the others may still be waiting: a node that starts late). Nothing where
    the stage trains nothing (no other process waits)."""
    answered = False

    def answer(checkpoint: str | None) -> None:
        nonlocal answered
        if trains:
            record_rank_0_decision(out, checkpoint)
            answered = True

    try:
        yield answer
    except BaseException as failed:
        if answered and several_processes_launched():
            # Replaced, not removed: a process that has not yet taken the answer would wait out WAIT_S for it. Any
            # exception, an ordinary failure (out of memory while loading) as much as a refusal.
            answered = False
            os.environ.pop(DECISION_VARIABLE, None)
            _record_refusal(out, f"rank 0 failed after answering: {_one_line(failed)}")
        elif trains and not answered and isinstance(failed, ChipadaptError) and several_processes_launched():
            _record_refusal(out, str(failed))
        raise
    finally:
        if answered:
            forget_rank_0_decision(out)


def _record_refusal(out: Path, line: str) -> None:
    try:
        _record(out, {"refused": line, "written": time.time()})
    except OSError:
        pass  # a folder that takes no file: the others wait and say so


def _one_line(failed: BaseException) -> str:
    """The failure as the others print it: a ChipadaptError's own line, else its type and first line."""
    if isinstance(failed, ChipadaptError):
        return str(failed)
    first = str(failed).strip().splitlines()[:1]
    return ": ".join([type(failed).__name__, *first])


def _tasks_of_one_slurm_step() -> bool:
    """This process is one of the tasks srun started for a job step: SLURM_JOB_ID, SLURM_STEP_ID and
    SLURM_RESTART_COUNT then name the step's launch, and with the command line one command of it (a task may run
    several one after another: `srun -n2 bash -c 'train.py out=X; train.py out=X overwrite=true'`; two identical
    ones remain indistinguishable). Not torchrun's workers inside a step (several launches may run one after another
    in it), nor processes started by hand in a step of one task (`srun --pty bash`)."""
    step = os.environ.get("SLURM_STEP_ID", "")
    return (
        bool(os.environ.get("SLURM_JOB_ID"))
        and step.isdigit()
        and int(step) < SLURM_SPECIAL_STEPS
        and os.environ.get("SLURM_NTASKS", "").isdigit()
        and int(os.environ["SLURM_NTASKS"]) > 1
        and not os.environ.get("TORCHELASTIC_RUN_ID")
    )


def _this_launch(recorded: dict) -> bool:
    """Written by a process with this one's launcher variables, during this process's life or, where those
    variables name one launch alone (the tasks of a SLURM job step) and the command line is this process's, before
    it started. Identical commands run one after another in one step remain indistinguishable."""
    written = recorded.get("written")
    return (
        isinstance(written, (int, float))
        and recorded.get("launch") == launch()
        and (
            written >= _process_started() - CLOCK_SLACK_S
            or (_tasks_of_one_slurm_step() and recorded.get("command") == launch_command())
        )
    )


def _refusal(recorded: dict) -> str | None:
    refused = recorded.get("refused")
    return refused if isinstance(refused, str) and _this_launch(recorded) else None


def _holds_the_lock(out: Path, recorded: dict) -> bool:
    """Whether the process that wrote the answer still holds the run folder's lock it took before writing it. On a
    filesystem without flock (nothing to tell), an answer of this launch written during this process's life."""
    lock, held = recorded.get("lock"), folder_lock_held(out)
    if held is None or not isinstance(lock, dict):
        return held is None and _this_launch(recorded)
    return held and _lock_as_held(out) == lock and lock.get("pid") == recorded.get("pid")


def _ended_after_answering(out: Path, recorded: dict) -> str | None:
    """The line for an answer of this launch whose writer holds the run folder's lock no more: rank 0 took the lock
    before it answered, and gives it back only as its job ends."""
    if "checkpoint" not in recorded or folder_lock_held(out) is not False or not _this_launch(recorded):
        return None
    checkpoint = recorded.get("checkpoint")
    decided = f"resumes {checkpoint}" if checkpoint else "starts from step 0"
    writer = f"pid {recorded.get('pid', '?')} on {recorded.get('host', '?')}"
    return (
        f"rank 0 ({writer}) answered that the run {decided}, then ended: it holds {out}'s lock no more; "
        "see rank 0's log for why it stopped"
    )


def rank_0_decision(out: Path, wait_s: float | None = None) -> str | None:
    """Another process's answer: rank 0's, from the environment it inherited, else from the file rank 0 wrote holding
    the folder's lock, waited for; rank 0's refusal or its end after answering, or one line where rank 0 gives none
    in time."""
    try:
        inherited = json.loads(os.environ.get(DECISION_VARIABLE) or "null")
    except ValueError:
        inherited = None
    if isinstance(inherited, dict) and inherited.get("folder") == str(out.resolve()):
        return inherited.get("checkpoint")
    path = out / "checkpoints" / DECISION_FILE
    wait_s = WAIT_S if wait_s is None else wait_s
    deadline, set_aside = time.monotonic() + wait_s, None
    while True:
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict):
            if (refused := _refusal(recorded)) is not None:
                raise ChipadaptError(f"rank 0 stopped: {refused}")
            if "checkpoint" in recorded and _holds_the_lock(out, recorded):
                return recorded.get("checkpoint")
            if (ended := _ended_after_answering(out, recorded)) is not None:
                raise ChipadaptError(ended)
            if "refused" in recorded and set_aside != recorded:
                log.warning(
                    "%s holds a refusal of rank 0 that is not known to be this launch's (written before this process "
                    "started, or by a launch with other launcher variables), waiting for this launch's rank 0: %s",
                    path,
                    recorded["refused"],
                )
            set_aside = recorded
        if time.monotonic() >= deadline:
            earlier = ""
            if set_aside is not None and "refused" in set_aside:
                earlier = f"; an earlier launch's refusal is there, not taken for this one's: {set_aside['refused']}"
            raise ChipadaptError(
                f"{out}: rank 0 said within {wait_s:.0f} s neither whether it resumes nor that it starts over "
                f"({path}: written once rank 0 holds the folder's lock){earlier}; see rank 0's log for why it stopped"
            )
        time.sleep(POLL_S)
