"""The first thing every model key checks of its folder: that it holds a whole Hugging Face model
(config.json), told apart from what users most often give instead, a LoRA adapter."""

from pathlib import Path

from chipadapt.errors import ChipadaptError

ADAPTER_CONFIG = "adapter_config.json"  # peft's: an adapter's settings, with no model of its own


def require_config_json(folder: Path, key: str) -> None:
    """Refuse `folder` without a config.json in one line; a LoRA adapter (train.py's `RUN/adapter/`, or
    peft's output elsewhere) is named as one, with the whole model to give instead: "not a Hugging Face
    model folder" sent the user of a LoRA run looking for a file its adapter never has."""
    if (folder / "config.json").is_file():
        return
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ChipadaptError(f"{key}: {folder} is not a Hugging Face model folder (no config.json)")
    merged = folder.parent / "model"
    if (merged / "config.json").is_file():
        instead = f"give the merged model of its run instead: {key}={merged}"
    else:
        instead = (
            "give a whole model: train.py saves a LoRA run's adapters merged into its base model as the run "
            "folder's model/ (peft's merge_and_unload() then save_pretrained() does the same for another adapter)"
        )
    raise ChipadaptError(
        f"{key}: {folder} is a LoRA adapter ({ADAPTER_CONFIG}, no config.json), not a whole model; {instead}"
    )
