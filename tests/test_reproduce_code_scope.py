"""A code version reruns only the reproduction steps whose results depend on that code (code_scope.py).
Before, raising the tokenizer selection's version reran all 12 steps of a completed smoke reproduction
(which has no tokenizer step, and whose DAPT uses the base tokenizer), logging "settings or inputs changed"."""

import pytest
from test_reproduce import by_name, compose_reproduce

from chipadapt.reproduce import ledger as ledger_module
from chipadapt.reproduce import runner
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.runner import plan, rerun_reason
from chipadapt.reproduce.steps import Step, load_steps

OLD = {"conversion": 2, "selection": 3}
NEW = {"conversion": 2, "selection": 4}


def test_smoke_steps_on_the_tiny_model_depend_on_neither_version():
    steps = load_steps(compose_reproduce(["variant=smoke"]))
    assert steps and all(step.code_scope <= {"heldout"} for step in steps)  # OASST's held-out rule: SFT's


def test_the_selection_applies_to_the_tokenizer_and_what_is_built_on_it_the_conversion_to_the_gguf_model():
    steps = by_name(load_steps(compose_reproduce(["variant=full"])))  # SmolLM2's GGUF, converted
    assert steps["tokenizer"].code_scope == {"selection", "conversion"}
    assert "selection" in steps["dapt_aug_lr5e-5"].code_scope  # trains with the augmented tokenizer
    assert "selection" not in steps["dapt_lr5e-5"].code_scope and "conversion" in steps["dapt_lr5e-5"].code_scope
    assert "selection" not in steps["merge_chipalign"].code_scope
    assert "conversion" in steps["merge_chipalign"].code_scope  # names the converted folder (base_model)
    tiny = by_name(load_steps(compose_reproduce(["variant=full", "model=tiny"])))
    assert "conversion" not in tiny["dapt_lr5e-5"].code_scope and "conversion" not in tiny["tokenizer"].code_scope


STEPS = [
    Step("tokenizer", "train.py", ("stage=tokenizer",), "s", code_scope=frozenset({"selection"})),
    Step("dapt", "train.py", ("tokenizer=base",), "s", code_scope=frozenset()),
    Step(
        "dapt_aug", "train.py", ("tokenizer=augmented",), "s", needs=("tokenizer",), code_scope=frozenset({"selection"})
    ),
]


@pytest.fixture
def old_ledger(tmp_path, monkeypatch):
    """Every step completed and stamped with every version, as the ledger has always stamped them."""
    monkeypatch.setattr(ledger_module, "code_versions", lambda *_, **__: dict(OLD))
    ledger = Ledger(tmp_path / "steps.json")
    for step in STEPS:
        ledger.start(step.name, step.command(tmp_path), tmp_path / "log")
        ledger.finish(step.name, "completed", 1.0, 0)
        step.folder(tmp_path).mkdir()
    monkeypatch.setattr(ledger_module, "code_versions", lambda *_, **__: dict(NEW))
    return Ledger(tmp_path / "steps.json")


def test_a_new_selection_reruns_only_the_steps_it_applies_to(tmp_path, old_ledger):
    assert [a for _, a in plan(STEPS, old_ledger, tmp_path, set(), set())] == ["rerun", "skip", "rerun"]
    assert old_ledger.other_code("dapt", STEPS[1].code_scope) is None
    assert old_ledger.other_code("tokenizer", STEPS[0].code_scope) == "selection v3"


def test_the_log_names_the_version_not_settings_or_inputs(tmp_path, old_ledger):
    why = rerun_reason(STEPS[0], old_ledger, STEPS[0].command(tmp_path), set())
    assert why.startswith("recorded with selection v3") and "settings" not in why


def test_a_hand_made_step_without_a_scope_still_takes_every_version(tmp_path, old_ledger):
    unscoped = [Step("dapt", "train.py", ("tokenizer=base",), "s")]
    assert [a for _, a in plan(unscoped, old_ledger, tmp_path, set(), set())] == ["rerun"]


def test_the_kill_line_says_what_a_rerun_does():
    with pytest.raises(runner.Terminated, match="skips the steps done and resumes the interrupted one"):
        runner._on_sigterm(15, None)


def test_the_held_out_rule_applies_to_the_steps_trained_on_grouped_conversations_and_what_is_built_on_them():
    full = by_name(load_steps(compose_reproduce(["variant=full"])))
    for name in ("attribute_model", "annotate", "steerlm", "steer_probe"):
        assert "heldout" in full[name].code_scope, name
    # The full variant's SFT leaves OASST out (data.sources.oasst=null): its figures never held OASST out.
    for name in ("sft", "dapt", "retriever", "tokenizer", "eval_base"):
        assert "heldout" not in full[name].code_scope, name
    fast = by_name(load_steps(compose_reproduce(["variant=fast"])))
    assert "heldout" in fast["sft"].code_scope and "heldout" in fast["eval_sft"].code_scope
    assert "heldout" not in fast["dapt"].code_scope


def test_a_record_from_before_the_held_out_rule_reruns_only_its_scope(tmp_path, monkeypatch):
    steps = [
        Step("dapt", "train.py", ("tokenizer=base",), "s", code_scope=frozenset()),
        Step("attribute_model", "train.py", ("stage=attribute_model",), "s", code_scope=frozenset({"heldout"})),
    ]
    monkeypatch.setattr(ledger_module, "code_versions", lambda *_, **__: dict(NEW))  # no "heldout": before it
    ledger = Ledger(tmp_path / "steps.json")
    for step in steps:
        ledger.start(step.name, step.command(tmp_path), tmp_path / "log")
        ledger.finish(step.name, "completed", 1.0, 0)
        step.folder(tmp_path).mkdir()
    monkeypatch.setattr(ledger_module, "code_versions", lambda *_, **__: {**NEW, "heldout": 2})
    ledger = Ledger(tmp_path / "steps.json")
    assert [a for _, a in plan(steps, ledger, tmp_path, set(), set())] == ["skip", "rerun"]
    assert ledger.other_code("attribute_model", steps[1].code_scope) == "heldout vNone"
