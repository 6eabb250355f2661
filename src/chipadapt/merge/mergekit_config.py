"""mergekit YAML in: a mergekit recipe as the Hydra overrides of the same merge.

`merge.py config=recipe.yml` turns a mergekit recipe into the Hydra overrides of the same merge
(`merge=`, `merge.lam`, `merge.schedule`, `models.*`, method settings) before Hydra composes the
config, so the run folder's overrides record the merge as chipadapt runs it, and sweeps still work.

The recipe's keys are checked and its parameters evaluated per tensor in merge/mergekit_recipe.py,
whose docstring says how the two tools' names map.
"""

import re
import sys
from collections import Counter
from pathlib import Path

import yaml

from chipadapt.errors import ChipadaptError
from chipadapt.loggers.literal_text import literal
from chipadapt.merge.mergekit_recipe import (
    INTERPOLATIONS,
    NORMALIZE_DEFAULT,
    RESCALES,
    Recipe,
    layer_position,
)


def _quote(value) -> str:
    """A Hydra override value: strings single-quoted (paths may hold characters the grammar reserves).
    Hydra keeps backslashes literally except before a quote or the closing quote, where they pair up."""
    if isinstance(value, str):
        escaped = re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value)
        return "'" + escaped + "'"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _single(values: dict[str, float], what: str, source: str) -> float:
    distinct = set(values.values())
    if len(distinct) > 1:
        raise ChipadaptError(f"{source}: {what} varies between tensors; chipadapt varies only the weights/t per tensor")
    return distinct.pop()


def overrides_from_mergekit(path: str | Path) -> list[str]:
    """The merge.py overrides that run the same merge as the mergekit config at `path`."""
    from chipadapt.merge.io import SafetensorsModel

    path = Path(path).expanduser()
    if not path.is_file():
        raise ChipadaptError(f"config: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ChipadaptError(f"config: {where}: not valid YAML ({problem})") from None
    recipe = Recipe(data, f"config={path}")
    roles = recipe.roles()
    chip = SafetensorsModel(roles["chip"][0], "models.chip")
    num_layers = int(chip.config.get("num_hidden_layers") or chip.config.get("n_layer") or 1)
    if getattr(recipe, "layer_range", (0, num_layers))[1] != num_layers:
        raise ChipadaptError(
            f"config={path}: layer_range {list(recipe.layer_range)} does not cover the chip model's {num_layers} layers"
        )

    lams, scales, densities, epsilons = {}, {}, {}, {}
    for tensor in chip.names():
        t = layer_position(tensor, num_layers)
        if recipe.method in INTERPOLATIONS:
            value = recipe.parameter("t", roles["chip"][1], tensor, t)
            if value is None:
                raise ChipadaptError(f"config={path}: no t for tensor {tensor}")
            lams[tensor] = float(value)
            continue
        weights = [recipe.parameter("weight", roles[r][1], tensor, t) for r in ("chip", "instruct")]
        if any(w is None for w in weights):
            raise ChipadaptError(f"config={path}: tensor {tensor} has no weight for both models")
        total = float(weights[0]) + float(weights[1])
        if abs(total - 1.0) < 1e-9:
            total = 1.0  # lam + (1 - lam) written out by a chipadapt merge: the same weights, not a rescale
        if total <= 0:
            raise ChipadaptError(f"config={path}: the weights of tensor {tensor} sum to {total}")
        lams[tensor] = float(weights[0]) / total
        normalize = recipe.parameter("normalize", None, tensor, t, NORMALIZE_DEFAULT[recipe.method])
        scale = float(recipe.parameter("lambda", None, tensor, t, 1.0))
        if recipe.method in RESCALES:
            rescale = recipe.parameter("rescale", None, tensor, t, RESCALES[recipe.method])
            if bool(rescale) != RESCALES[recipe.method]:
                raise ChipadaptError(
                    f"config={path}: rescale: {rescale} for {recipe.method}: chipadapt's {recipe.method} "
                    f"{'always rescales' if RESCALES[recipe.method] else 'never rescales'} what it keeps"
                )
        if not normalize:
            if recipe.method in ("linear", "ties", "della") and abs(total - 1.0) > 1e-9:
                raise ChipadaptError(
                    f"config={path}: normalize: false with weights summing to {total} "
                    f"has no chipadapt equivalent for {recipe.method}"
                )
            scale *= total  # lambda * (w_c tau_c + w_i tau_i) = lambda * total * (lam tau_c + (1 - lam) tau_i)
        if recipe.method != "linear":  # linear has no scale: its normalised weights are the whole story
            scales[tensor] = scale
        if recipe.method in ("ties", "della"):
            pair = [recipe.parameter("density", roles[r][1], tensor, t, 1.0) for r in ("chip", "instruct")]
            if pair[0] != pair[1]:
                raise ChipadaptError(
                    f"config={path}: the two models' densities differ ({pair}); chipadapt uses one density"
                )
            densities[tensor] = float(pair[0])
        if recipe.method == "della":
            pair = [recipe.parameter("epsilon", roles[r][1], tensor, t, 0.0) for r in ("chip", "instruct")]
            if pair[0] != pair[1]:
                raise ChipadaptError(
                    f"config={path}: the two models' epsilons differ ({pair}); chipadapt uses one epsilon"
                )
            epsilons[tensor] = float(pair[0])

    for note in recipe.notes:
        print(f"chipadapt: note: {note}", file=sys.stderr, flush=True)
    overrides = [
        f"merge={recipe.method}",
        f"models.chip={_quote(roles['chip'][0])}",
        f"models.instruct={_quote(roles['instruct'][0])}",
        f"models.base={_quote(roles['base'][0]) if roles['base'] else 'null'}",
    ]
    if recipe.out_dtype:
        overrides.append(f"merge.out_dtype={recipe.out_dtype}")
    if recipe.chat_template is not None:
        overrides.append(f"merge.chat_template={_quote(literal(recipe.chat_template))}")
    if scales:
        overrides.append(f"merge.method.scale={_quote(_single(scales, 'lambda', f'config={path}'))}")
    if densities:
        overrides.append(f"merge.method.density={_quote(_single(densities, 'density', f'config={path}'))}")
    if epsilons:
        overrides.append(f"merge.method.epsilon={_quote(_single(epsilons, 'epsilon', f'config={path}'))}")
    default = _recipe_default_lam(recipe, roles, lams) if recipe.method in INTERPOLATIONS else None
    if default is None:
        default, _ = Counter(lams.values()).most_common(1)[0]
    overrides.append(f"merge.lam={_quote(default)}")
    by_value: dict[float, list[str]] = {}
    for tensor, lam in lams.items():
        if lam != default:
            by_value.setdefault(lam, []).append(tensor)
    rules = [
        f"{{pattern:{_quote('^(' + '|'.join(re.escape(n) for n in names) + ')$')},lam:{_quote(lam)}}}"
        for lam, names in by_value.items()
    ]
    overrides.append(f"merge.schedule=[{','.join(rules)}]")
    return overrides


def _recipe_default_lam(recipe, roles, lams: dict[str, float]) -> float | None:
    """The recipe's own `t` for tensors no filter names, when it is one value (not a gradient) that some
    tensor takes: `merge.lam` is then that, so `merge.lam=X` changes what the recipe's default covers
    (the filtered tensors keep their values through merge.schedule)."""
    unnamed = "\0"  # a tensor name no filter is a substring of
    ends = {recipe.parameter("t", roles["chip"][1], unnamed, t) for t in (0.0, 1.0)}
    if len(ends) != 1 or None in ends:
        return None
    value = float(ends.pop())
    return value if value in lams.values() else None


def expand_config_argument(argv: list[str]) -> list[str]:
    """merge.py's command line with `config=FILE` replaced by the overrides it stands for; the user's
    other overrides follow it, so they still win (`config=r.yml merge.lam=0.3`)."""
    out = []
    for arg in argv:
        if arg.startswith("config="):
            out.extend(overrides_from_mergekit(arg.split("=", 1)[1]))
        else:
            out.append(arg)
    return out


def expand_argv_or_exit() -> None:
    """For merge.py, before Hydra reads sys.argv: a bad recipe is one error line, exit 2."""
    from chipadapt.errors import exit_on_user_error

    sys.argv[1:] = exit_on_user_error(expand_config_argument, sys.argv[1:])
