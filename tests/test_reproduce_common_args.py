"""conf/variant/full.yaml's common_args go before every train.py and evaluate.py step: a train.py step whose
stage never reads one (run_settings.NOT_READ) is given the others, since train.py refuses it
(stage_reads.py): `variant.common_args=['logger=tensorboard']` stopped the tokenizer step."""

from test_reproduce import compose_reproduce

from chipadapt.reproduce.steps import load_steps


def test_a_common_argument_is_left_out_of_a_step_whose_stage_never_reads_it(capsys):
    cfg = compose_reproduce(["variant=full", "variant.common_args=['logger=tensorboard','model.dtype=bfloat16']"])
    steps = {step.name: step for step in load_steps(cfg)}
    assert "logger=tensorboard" not in steps["tokenizer"].args  # stage=tokenizer trains nothing
    assert "logger=tensorboard" not in steps["annotate"].args
    assert "logger=tensorboard" in steps["sft"].args and "model.dtype=bfloat16" in steps["sft"].args
    assert "model.dtype=bfloat16" not in steps["annotate"].args  # annotate rates with the attribute model
    said = capsys.readouterr().out
    assert said.count("logger=tensorboard left out of") == 1 and "tokenizer" in said


def test_every_common_argument_reaches_evaluate_py(capsys):
    cfg = compose_reproduce(["variant=fast", "variant.common_args=['logger=tensorboard']"])
    for step in load_steps(cfg):
        if step.script == "evaluate.py":
            assert step.args[0] == "logger=tensorboard"
