"""The interruption line says what a rerun of that command does: it said "a rerun with the same
hydra.run.dir resumes" for every command, where a curation, an annotation or a bootstrap round
starts over, and an evaluation keeps the tasks it finished."""

import re

import pytest
from conftest import CONF, ROOT, compose
from omegaconf import OmegaConf

from chipadapt.after_interruption import JOURNALED, PUBLISHED_WHOLE, TRAIN, TRAINING_STAGES, UNKNOWN, rerun_note

KEPT = "what was complete is kept, a rerun with the same hydra.run.dir"
STARTS_OVER = "nothing was published, a rerun with the same hydra.run.dir starts over"
# stage=annotate and stage=bootstrap journal their ratings and replies (steerlm/progress_journal.py).
CONTINUES = (
    "the ratings and replies made are kept, a rerun with the same hydra.run.dir (and the same settings) makes only "
    "the rest"
)


def entry_point_targets() -> dict[str, str]:
    """Each script's job, as it names it: `entry_point(CONF, "train", "chipadapt.pipeline:train")`."""
    scripts = [*ROOT.glob("*.py"), ROOT / "src" / "chipadapt" / "data" / "curate.py"]
    found = {}
    for script in scripts:
        match = re.search(r'entry_point\(.*"([\w.]+:\w+)"\)', script.read_text())
        if match:
            found[script.name] = match.group(1)
    return found


def test_every_entry_point_and_stage_says_what_its_rerun_does():
    """A script or stage added later without a line of its own would say only what every job keeps."""
    targets = entry_point_targets()
    assert {"train.py", "evaluate.py", "merge.py", "curate.py", "reproduce.py"} <= targets.keys()
    for script, target in targets.items():
        if target != TRAIN:
            assert rerun_note(target, OmegaConf.create({}), "hydra.run.dir") != UNKNOWN, script
    stages = set()
    for path in (CONF / "stage").glob("*.yaml"):  # `stage:` holds the keys of some (`# @package _global_`)
        stage = OmegaConf.load(path)
        stages.add(stage.get("stage", stage).get("name"))
    assert stages == set(TRAINING_STAGES) | set(PUBLISHED_WHOLE) | set(JOURNALED)


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ([], f"{KEPT} resumes from its last checkpoint (step 0 if none was written)"),
        (
            ["stage=sft", "resume=false"],
            f"{KEPT} and resume=true resumes from its last checkpoint (step 0 if none was written)",
        ),
        (["stage=annotate"], CONTINUES),
        (["stage=bootstrap"], CONTINUES),
        (["stage=tokenizer"], STARTS_OVER),
    ],
)
def test_train_says_what_a_rerun_of_its_stage_does(tmp_path, overrides, said):
    assert rerun_note(TRAIN, compose(overrides, tmp_path), "hydra.run.dir") == said


def test_the_other_commands_say_what_their_rerun_does():
    cfg = OmegaConf.create({"resume": True})
    assert rerun_note("chipadapt.curation.run:curate_job", cfg, "hydra.run.dir") == STARTS_OVER
    assert rerun_note("chipadapt.eval.run:run", cfg, "hydra.sweep.dir") == (
        "what was complete is kept, a rerun with the same hydra.sweep.dir keeps the tasks and answers it finished "
        "and runs the rest"
    )
    assert rerun_note("chipadapt.reproduce.run:run", cfg, "hydra.run.dir") == (
        f"{KEPT} skips the steps that are done and resumes the others"
    )
    # A config the job has not validated yet (a ??? left) still gets its line.
    assert rerun_note(TRAIN, OmegaConf.create({"resume": "???", "stage": {"name": "dapt"}}), "hydra.run.dir") == (
        f"{KEPT} resumes from its last checkpoint (step 0 if none was written)"
    )
