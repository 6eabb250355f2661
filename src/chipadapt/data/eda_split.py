"""The fixed evaluation split of EDA script pairs (prompt -> OpenROAD Python script).

A row is an evaluation row when a hash of its normalised script falls under `fraction`: the choice
depends on the script alone, so a paraphrased prompt of an evaluation script (the `_aug` file) is an
evaluation row too, and SFT (`heldout: exclude`) never trains on a script that `eval=eda_script` asks for.
"""

import re

from chipadapt.data.holdout import held_out


def normalise_script(script: str) -> str:
    """Code without comments, blank lines or trailing spaces: what identifies a script."""
    lines = [re.sub(r"#.*$", "", line).rstrip() for line in script.splitlines()]
    return "\n".join(line for line in lines if line.strip())


def is_eval_row(script: str, fraction: float, salt: str = "eda-split-v1") -> bool:
    return held_out(f"{salt}\0{normalise_script(script)}", fraction)
