"""OmegaConf resolvers the config tree uses; registered once when chipadapt is imported."""

import hashlib
import json
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf


def resource_path(relative: str) -> str:
    """Absolute path of a file or folder shipped inside the package (e.g. the sample corpus)."""
    path = resources.files("chipadapt") / "resources" / relative
    if not path.is_file() and not path.is_dir():
        raise FileNotFoundError(f"chipadapt ships no resource named {relative!r}")
    return str(path)


if not OmegaConf.has_resolver("chipadapt_resource"):
    OmegaConf.register_new_resolver("chipadapt_resource", resource_path)


def gpus_per_node(devices, default: int = 8) -> int:
    """SLURM's GPUs (and tasks) per node for `trainer.devices`: the count it names, or for -1 / auto
    (every GPU of the node, which only the machine knows) `default`, which hydra.launcher.gpus_per_node
    overrides."""
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    if isinstance(devices, str) and devices.strip().isdigit() and int(devices) >= 1:
        return int(devices)
    if isinstance(devices, str) and "," in devices:  # "0,1,2,3": indices
        return len([d for d in devices.split(",") if d.strip()])
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    return default


if not OmegaConf.has_resolver("chipadapt_gpus_per_node"):
    OmegaConf.register_new_resolver("chipadapt_gpus_per_node", gpus_per_node)


# Where conf/hydra/default.yaml puts run folders (`hydra.run.dir: outputs/${chipadapt_run_folder:...}`),
# relative to the folder the command runs in.
OUTPUTS = Path("outputs")


def run_folder(timestamped: str, command: str, config_name, task_overrides, hydra_overrides) -> str:
    """`hydra.run.dir` below outputs/: `<date>/<time>`, but in a SLURM job
    `slurm-<job id>/<command>-<hash8>`, where the hash is of the command line (config name, then the
    overrides, in an order that only overrides of one key change). `sbatch --requeue` reruns the
    script's exact command lines, so each finds its own folder again and resumes there, as does a
    launcher that passes the same overrides in another order; two different command lines of one job (a
    script that trains then evaluates several checkpoints, an `salloc` session) get two folders, so
    neither replaces the other's results."""
    from chipadapt.scaleout.slurm_requeue import slurm_job_id

    job = slurm_job_id()
    if not job:
        return timestamped
    folder = f"slurm-{job}/{command}-{command_line_hash(config_name, task_overrides, hydra_overrides)}"
    # A job started before the hash took the canonical order, requeued after an upgrade: its folder is
    # named by the overrides in their typed order. Found there, it resumes there instead of starting over.
    typed = f"slurm-{job}/{command}-{command_line_hash(config_name, task_overrides, hydra_overrides, canonical=False)}"
    if typed != folder and (OUTPUTS / typed).is_dir() and not (OUTPUTS / folder).exists():
        return typed
    return folder


def command_line_hash(config_name, task_overrides, hydra_overrides, canonical: bool = True) -> str:
    """8 hex digits naming one command line: its config name and its overrides as typed (Hydra keeps each
    one's text: `hydra.overrides.task` and `.hydra`), in canonical order (`canonical_order`): `a=1 b=2`
    and `b=2 a=1` are one line, `a=1 a=2` and `a=2 a=1` two, since the later one wins. The shell's
    quoting is gone by then, so `'k=[a,b]'` and `k=[a,b]` are the same line."""
    # `hydra.mode=RUN` is what Hydra adds to every run (not to a `--cfg` preview): it names no line.
    hydra_own = [o for o in _as_typed(hydra_overrides) if not o.lstrip("+~").startswith("hydra.mode=")]
    order = canonical_order if canonical else list
    line = [str(config_name), order(_as_typed(task_overrides)), order(hydra_own)]
    return hashlib.sha256(json.dumps(line).encode()).hexdigest()[:8]


def override_key(override: str) -> str:
    """The config key an override sets or deletes: `model.path` of `++model.path=x`, `db` of `~db` or of
    `db@pkg=mysql` (its package left out: two overrides of one group may target each other's)."""
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0].strip()


def _overlap(a: str, b: str) -> bool:
    """Whether two keys may touch the same value: equal, or one inside the other (`model` and
    `model.path`: `model={path:x}` and `model.path=y` set the same value)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _appends_or_deletes(override: str) -> bool:
    """`+group=x`, `++key=v`, `~key`: they change the defaults list or the config's shape, composed in the
    order given (`+a=one +b=two` and `+b=two +a=one` may set one key differently), so they keep it."""
    return override.startswith(("+", "~"))


def canonical_order(overrides: list[str]) -> list[str]:
    """The overrides in an order that does not depend on how those of different keys were interleaved:
    each step takes the smallest text among the overrides that no earlier remaining one of an overlapping
    key precedes. Overrides of one key keep their relative order (Hydra's last one wins), so two lines
    with the same result-deciding order give one list, and lines that differ in it give two."""
    keys = [override_key(o) for o in overrides]
    left = list(range(len(overrides)))
    ordered = []
    while left:
        free = [
            i
            for n, i in enumerate(left)
            if not any(
                _overlap(keys[j], keys[i]) or (_appends_or_deletes(overrides[j]) and _appends_or_deletes(overrides[i]))
                for j in left[:n]
            )
        ]
        pick = min(free, key=lambda i: overrides[i])
        ordered.append(overrides[pick])
        left.remove(pick)
    return ordered


def _as_typed(overrides) -> list[str]:
    # The text, not its value: `+tag=${now:%S}` resolved would name another folder at every requeue.
    if OmegaConf.is_list(overrides):
        overrides = OmegaConf.to_container(overrides, resolve=False)
    return [str(o) for o in overrides or []]


if not OmegaConf.has_resolver("chipadapt_run_folder"):
    OmegaConf.register_new_resolver("chipadapt_run_folder", run_folder)


def trainer_setting(key: str, *, _root_):
    """`trainer.<key>` for the SLURM launcher's resources; `--cfg hydra` shows the hydra section
    without the trainer, so it is told which view has both."""
    value = OmegaConf.select(_root_, f"trainer.{key}", default=None)
    if value is None:
        raise ValueError(
            f"hydra.launcher follows trainer.{key}, which this view leaves out: "
            "preview it with --cfg all --resolve -p hydra.launcher"
        )
    return value


if not OmegaConf.has_resolver("chipadapt_trainer"):
    OmegaConf.register_new_resolver("chipadapt_trainer", trainer_setting)


def slurm_gpus_per_node(accelerator: str, devices, default: int = 8) -> int:
    """GPUs to ask SLURM for: none for a CPU trainer, else one per device of `trainer.devices`."""
    return 0 if str(accelerator).lower() == "cpu" else gpus_per_node(devices, default)


def slurm_tasks_per_node(gpus: int, devices) -> int:
    """Lightning's SLURM environment maps one task to one device: one per GPU asked for (which
    `hydra.launcher.gpus_per_node` may set), or for a CPU trainer one per process of `trainer.devices`."""
    return gpus if gpus >= 1 else gpus_per_node(devices, 1)


if not OmegaConf.has_resolver("chipadapt_slurm_gpus"):
    OmegaConf.register_new_resolver("chipadapt_slurm_gpus", slurm_gpus_per_node)
if not OmegaConf.has_resolver("chipadapt_slurm_tasks"):
    OmegaConf.register_new_resolver("chipadapt_slurm_tasks", slurm_tasks_per_node)
