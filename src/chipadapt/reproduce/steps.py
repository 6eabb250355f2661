"""The steps of a reproduction, as configured: one command line each, and what it needs."""

from dataclasses import dataclass, field, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.report import console
from chipadapt.reproduce.code_scope import converted_model, own_scope, with_needs
from chipadapt.run_settings import READ_THROUGH, is_unread

SCRIPTS = ("train.py", "evaluate.py", "merge.py")


@dataclass(frozen=True)
class Step:
    name: str
    script: str  # train.py | evaluate.py | merge.py, in the repository root
    args: tuple[str, ...]  # Hydra overrides, without the run folder
    section: str  # which part of the report reads it
    label: str = ""
    needs: tuple[str, ...] = ()
    multirun: bool = False  # a Hydra sweep (-m): its jobs go to numbered folders under the step's
    report_reads_model: bool = False  # the report opens its model's files, not only its records
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    choose: dict | None = field(default=None, hash=False, compare=False)  # see reproduce/choices.py
    # The code versions its results depend on (code_scope.py); None: every one (a step made by hand).
    code_scope: frozenset[str] | None = field(default=None, hash=False, compare=False)

    def folder(self, out: Path) -> Path:
        return out / self.name

    def command(self, out: Path, chosen: tuple[str, ...] = ()) -> list[str]:
        """The script and its arguments (and the overrides its `choose` picked); the run folder is the
        step's, so a rerun resumes there."""
        where = f"hydra.sweep.dir={self.folder(out)}" if self.multirun else f"hydra.run.dir={self.folder(out)}"
        return [self.script, *(["-m"] if self.multirun else []), *self.args, *chosen, where]


def flatten(items) -> list[str]:
    """Arguments may hold lists (shared argument sets interpolated into a step): one flat list."""
    flat = []
    for item in items:
        if isinstance(item, (list, tuple)):
            flat += flatten(item)
        elif item is not None:
            flat.append(str(item))
    return flat


def common_key(arg: str) -> str:
    """The dotted key a common argument sets: `logger=tensorboard` -> logger, `+model.x=1` -> model.x."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(arg).key_or_group.replace("/", ".")


def stage_of(args: list[str]) -> str | None:
    """The stage a train.py step's arguments name (the last `stage=`); None for train.yaml's own, dapt, which
    reads every group (run_settings.NOT_READ has no entry for it)."""
    named = [arg.split("=", 1)[1] for arg in args if arg.startswith("stage=")]
    return named[-1] if named else None


def read_common(common: list[str], name: str, args: list[str], left_out: dict[str, list[str]]) -> list[str]:
    """Of the variant's common arguments, those train.py step `name` (its `args`) reads: train.py refuses an
    override of what its stage never reads (stage_reads.py), and common_args go before every step, so
    `logger=tensorboard` stopped the tokenizer step. What is left out is recorded in `left_out` (arg -> steps)."""
    stage = stage_of([*common, *args])
    kept = []
    for arg in common:
        key = common_key(arg)
        if key not in READ_THROUGH and is_unread(key, stage):
            left_out.setdefault(arg, []).append(name)
        else:
            kept.append(arg)
    return kept


def check_chip_dapt(cfg: DictConfig) -> None:
    """`chip_dapt` names a step of `steps`: the steps built on the chip model interpolate it into their
    `needs`, where a wrong name was told as `steps.sft.needs`, a key the user never set."""
    chip = cfg.get("chip_dapt")
    if not (isinstance(chip, str) and chip in cfg.steps):
        trained = [
            str(name) for name, node in cfg.steps.items() if node is not None and node.get("script") == "train.py"
        ]
        raise ChipadaptError(
            f"chip_dapt: no step named {chip!r} (the DAPT step the chip model comes from; train.py steps: "
            f"{', '.join(trained)})"
        )


def load_steps(cfg: DictConfig) -> list[Step]:
    """`steps` in config order, less the variant's `skip` and whatever needs a skipped step."""
    check_chip_dapt(cfg)
    skip = set(cfg.variant.skip or [])
    unknown = skip - set(cfg.steps)
    if unknown:
        raise ChipadaptError(f"variant.skip: no step named {sorted(unknown)[0]!r} (steps: {', '.join(cfg.steps)})")
    common = flatten(OmegaConf.to_container(cfg.variant.common_args, resolve=True) or [])
    steps, dropped = [], set(skip)
    left_out: dict[str, list[str]] = {}  # common argument -> the train.py steps whose stage never reads it
    for name, node in cfg.steps.items():
        if node is None:
            dropped.add(name)
            continue
        spec = OmegaConf.to_container(node, resolve=True)
        choice = spec.get("choose")
        if choice is not None:
            for key in ("among", "by", "take"):
                if not choice.get(key):
                    raise ChipadaptError(f"steps.{name}.choose.{key}: required")
            named = [*choice["among"], *(choice.get("endpoints") or []), *(choice.get("prompts_from") or [])]
            unknown = [n for n in named if n not in cfg.steps]
            if unknown:
                raise ChipadaptError(f"steps.{name}.choose: no step named {unknown[0]!r}")
            # The candidates (and prompt sources) that the variant skips are none; the others are needed first.
            kept = [n for n in choice["among"] if n not in dropped and cfg.steps.get(n) is not None]
            choice = {**choice, "among": kept}
            if choice.get("prompts_from"):
                choice["prompts_from"] = [
                    n for n in choice["prompts_from"] if n not in dropped and cfg.steps.get(n) is not None
                ]
        needs = tuple(spec.get("needs") or ()) + tuple(
            n
            for n in [
                *(choice or {}).get("among", []),
                *(choice or {}).get("endpoints", []),
                *((choice or {}).get("prompts_from") or []),
            ]
            if n not in (spec.get("needs") or ())
        )
        missing = [n for n in needs if n not in cfg.steps]
        if missing:
            raise ChipadaptError(f"steps.{name}.needs: no step named {missing[0]!r}")
        if name in dropped or any(n in dropped for n in needs):
            dropped.add(name)
            continue
        if choice is not None and not choice["among"]:
            raise ChipadaptError(f"steps.{name}.choose.among: every candidate is skipped in this variant")
        if spec.get("report_reads_model") and spec.get("multirun"):
            raise ChipadaptError(f"steps.{name}.report_reads_model: a sweep (multirun) has no one model to rebuild")
        script = spec.get("script")
        if script not in SCRIPTS:
            raise ChipadaptError(f"steps.{name}.script: {script!r} is not one of {', '.join(SCRIPTS)}")
        args = flatten(spec.get("args") or [])
        if script == "train.py":
            args = read_common(common, name, args, left_out) + args
        elif script != "merge.py":  # merge.py names its models itself; the others take the variant's model
            args = common + args
        steps.append(
            Step(
                name=name,
                script=script,
                args=tuple(args),
                section=spec.get("section", "other"),
                label=spec.get("label", name),
                needs=needs,
                multirun=bool(spec.get("multirun", False)),
                report_reads_model=bool(spec.get("report_reads_model", False)),
                meta=spec.get("meta") or {},
                choose=choice,
            )
        )
    converted, base_model = converted_model(cfg), OmegaConf.select(cfg, "base_model")
    scopes = with_needs(
        {s.name: own_scope(s.script, list(s.args), converted, base_model) for s in steps},
        {s.name: tuple(n for n in s.needs if n not in dropped) for s in steps},
    )
    steps = [replace(s, code_scope=scopes[s.name]) for s in steps]
    for arg, names in left_out.items():  # once per reproduction: the dry run and the log show it
        console.print(
            f"variant.common_args: {arg} left out of {', '.join(names)} (train.py; their stage never reads it)",
            highlight=False,
        )
    return steps
