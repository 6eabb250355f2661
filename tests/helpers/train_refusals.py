"""What train.py's one `chipadapt: error:` line would say, from its job run in this process: each train.py
process spent 5-8 CPU-s importing before it refused anything. The command line's own contract (exit status
2, exactly one error line, no traceback) is checked by the fresh processes the fault tests keep."""

from pathlib import Path

from conftest import compose


def train_refusal(overrides: list[str], run_dir: Path) -> str:
    """The message train.py refuses `overrides` with, run in `run_dir`: composition (Hydra's error, as
    cli.describe_hydra_error puts it), then validation and the job, as cli.run_job runs them. Fails when
    the job runs through, or stops on anything that is not the user's input."""
    from chipadapt.cli import describe_hydra_error
    from chipadapt.config_schema import validate
    from chipadapt.errors import ChipadaptError

    try:
        cfg = compose(overrides, run_dir)
    except Exception as err:  # noqa: BLE001 (what is not a composition error fails below)
        described = describe_hydra_error(err)
        assert described is not None, repr(err)
        return described
    try:
        validate(cfg)
        from chipadapt.pipeline import train  # after validation: a config refusal needs no torch

        train(cfg)
    except Exception as err:  # noqa: BLE001
        # Hydra's instantiate wraps what a _target_ raises (errors.exit_on_user_error unwraps it the same way).
        cause = err if isinstance(err, ChipadaptError) else err.__cause__
        if isinstance(cause, ChipadaptError):
            return str(cause)
        described = describe_hydra_error(err)  # an OmegaConf error in the job: cli reports it in one line too
        assert described is not None, repr(err)
        return described
    raise AssertionError(f"train.py {' '.join(overrides)}: ran through, nothing was refused")
