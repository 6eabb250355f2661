"""OmegaConf resolvers the config tree uses; registered once when chipadapt is imported."""

from importlib import resources

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
