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
