"""Where a merge may write its output, decided from the config and the file system alone: merge.py's
job refuses a bad `output` with this before it imports torch (the merge methods' and the readers'
modules), so the refusal costs no torch import."""

from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.outputs import check_output_folder, refuse_overlap_with_inputs, written_by

MODEL_KEYS = ("chip", "instruct", "base")  # cfg.models: the folders a merge reads


def check_merge_output(dest: str, overwrite: bool, inputs: list[tuple[str, Path]]) -> Path:
    """`check_output_folder` for `output`, naming the command whose output a folder of another one is
    (`output=RUN/model` is train.py's model: its marker says so, and "no marker" would send the user
    looking for one)."""
    target = Path(dest).expanduser().resolve()
    owner = written_by(target) if target.is_dir() else None
    if owner not in (None, "merge"):
        refuse_overlap_with_inputs(dest, "output", inputs)  # an input is named as such first
        raise ChipadaptError(
            f"output: {dest} is an output of {owner}, not of merge (its .chipadapt-output.json says so); "
            "refusing to replace it: choose another folder"
        )
    return check_output_folder(dest, "merge", "output", overwrite, inputs)
