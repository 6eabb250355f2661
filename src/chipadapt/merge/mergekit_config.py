"""mergekit YAML in and out, for the methods both tools have.

In: `merge.py config=recipe.yml` turns a mergekit recipe into the Hydra overrides of the same merge
(`merge=`, `merge.lam`, `merge.schedule`, `models.*`, method settings) before Hydra composes the
config, so the run folder's overrides record the merge as chipadapt runs it, and sweeps still work.
Out: every merge writes `mergekit_config.yml` beside its manifest.

The two tools name the same things differently:
- chipadapt's `lam` is the chip model's weight. In mergekit's slerp (and ChipAlign, written as the
  custom method `chipalign`) the interpolation `t` runs from `base_model` (t=0) to the other model,
  so the instruct model is `base_model` and `t` = lam. For linear, task_arithmetic, ties and della,
  the first listed model (not `base_model`) is the chip model and the second the instruct model,
  weighted lam and 1 - lam; mergekit's `lambda` is our `scale`.
- mergekit parameters vary by tensor through `filter` (a substring of the tensor name, first match
  wins) and gradients (a list of anchors interpolated over the layers: layer i of N sits at
  t = i / (N - 1), tensors before the layers at 0 and after them at 1). chipadapt evaluates them
  for every tensor of the chip model and writes the result as `merge.schedule` (regex -> lam).
- mergekit's `out_dtype` (else `dtype`, which it also writes in) is `merge.out_dtype`, the dtype the
  weights are written in; `dtype` is also mergekit's compute dtype, where chipadapt keeps float32.

Every key of a recipe is honoured or refused: mergekit's pydantic models ignore keys they do not know,
but a misspelt `densty` or a tokenizer setting left out would merge something else than the recipe says.
"""

import re
import sys
from collections import Counter
from pathlib import Path

import yaml

from chipadapt.errors import ChipadaptError

INTERPOLATIONS = ("slerp", "chipalign")  # t from base_model (instruct) to the chip model
WEIGHTED = ("linear", "task_arithmetic", "ties", "della")  # per-model weights
NEEDS_BASE = ("task_arithmetic", "ties", "della")
# mergekit's defaults of `normalize` per method (its linear normalises, task arithmetic does not).
NORMALIZE_DEFAULT = {"linear": True, "task_arithmetic": False, "ties": True, "della": True}
LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")
# The keys of mergekit's MergeConfiguration and of its parts.
RECIPE_KEYS = (
    "merge_method",
    "models",
    "slices",
    "modules",
    "base_model",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "tokenizer",
    "chat_template",
)
MODEL_KEYS = ("model", "parameters")
SLICE_KEYS = ("sources", "base_model", "residual_weight", "parameters")
SOURCE_KEYS = ("model", "layer_range", "parameters")
# The parameters each method reads in mergekit (at any scope: model, slice or global).
# int8_mask only narrows the dtype of mergekit's sign mask: the same merge, so accepted.
TASK_VECTOR_PARAMETERS = ("weight", "density", "lambda", "normalize", "rescale", "int8_mask")
PARAMETERS = {
    "slerp": ("t",),
    "chipalign": ("t",),
    "linear": ("weight", "normalize"),
    "task_arithmetic": TASK_VECTOR_PARAMETERS,
    "ties": TASK_VECTOR_PARAMETERS,
    "della": (*TASK_VECTOR_PARAMETERS, "epsilon"),
}
# Whether chipadapt rescales what it trims (mergekit's `rescale`; task arithmetic trims nothing).
RESCALES = {"ties": False, "della": True}
DTYPES = ("float32", "bfloat16", "float16")
UNION = (
    "chipadapt writes the tokenizer of the input with the longest vocabulary (the chip model's on a tie; "
    "the others must be its prefix), mergekit's tokenizer_source: union (give that, or leave the key out)"
)


# --- mergekit's parameter settings, evaluated per tensor ---------------------------------------


def evaluate(setting, tensor: str, t: float):
    """A mergekit parameter setting for one tensor at layer position t (None: no rule matched)."""
    if isinstance(setting, bool) or isinstance(setting, (int, float, str)) or setting is None:
        return setting
    if isinstance(setting, dict):  # one conditional given without a list
        setting = [setting]
    if not isinstance(setting, list) or not setting:
        raise ChipadaptError(
            f"mergekit config: parameter value {setting!r} is not a number, a gradient or a list of filters"
        )
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in setting):
        position = t * (len(setting) - 1)
        low = int(position)
        high = min(len(setting) - 1, low + 1)
        frac = position - low
        return (1 - frac) * setting[low] + frac * setting[high]
    for rule in setting:
        if not isinstance(rule, dict) or "value" not in rule:
            raise ChipadaptError(f"mergekit config: {rule!r} is not a {{filter, value}} rule")
        pattern = rule.get("filter")
        if pattern in (None, "*") or pattern in tensor:
            return evaluate(rule["value"], tensor, t)
    return None


def layer_position(tensor: str, num_layers: int) -> float:
    """Where mergekit puts a tensor on the gradient axis."""
    match = LAYER.search(tensor)
    if match:
        return int(match.group(1)) / (num_layers - 1) if num_layers > 1 else 1.0
    return 0.0 if "embed" in tensor else 1.0  # embeddings come before the layers; norm and head after


class Recipe:
    """A parsed mergekit config: the models and a lookup of their parameters per tensor."""

    def __init__(self, data: dict, source: str):
        if not isinstance(data, dict) or "merge_method" not in data:
            raise ChipadaptError(f"{source}: not a mergekit config (no merge_method)")
        self.source = source
        self.method = str(data["merge_method"])
        if self.method not in INTERPOLATIONS + WEIGHTED:
            raise ChipadaptError(
                f"{source}: merge_method {self.method!r} is not one chipadapt has "
                f"(one of {', '.join(INTERPOLATIONS + WEIGHTED)})"
            )
        self.base = data.get("base_model")
        self._check_keys(data)
        self.globals = data.get("parameters") or {}
        self.slice_params: dict = {}
        if data.get("slices") and data.get("models"):
            raise ChipadaptError(f"{source}: give either models or slices, not both")
        if data.get("modules"):
            raise ChipadaptError(f"{source}: multi-module merges are not supported")
        if data.get("slices"):
            self.models = self._from_slices(data["slices"])
        else:
            self.models = [(str(m["model"]), m.get("parameters") or {}) for m in data.get("models") or []]
        self._check_tokenizer(data)
        compute = self._dtype(data, "dtype")
        self.out_dtype = self._dtype(data, "out_dtype") or compute
        # Said once, on stderr: merge.py reads the recipe before Hydra sets up logging.
        self.notes = []
        if compute not in (None, "float32"):
            self.notes.append(
                f"{source}: dtype: {compute} is mergekit's compute dtype; chipadapt merges in float32 and "
                f"writes {self.out_dtype} (merge.out_dtype={self.out_dtype})"
            )

    def _check_keys(self, data: dict) -> None:
        """Refuse keys mergekit does not have (it would ignore them) and parameters the method does not read."""
        known = PARAMETERS[self.method]

        def check(node, keys, where: str) -> None:
            if not isinstance(node, dict):
                raise ChipadaptError(f"{self.source}: {where or 'the recipe'}: expected a mapping, got {node!r}")
            for key in node:
                if key not in keys:
                    raise ChipadaptError(
                        f"{self.source}: {where + '.' if where else ''}{key}: unknown key "
                        f"(known here: {', '.join(keys)})"
                    )
            params = node.get("parameters")
            if "parameters" in keys and params is not None:
                if not isinstance(params, dict):
                    raise ChipadaptError(f"{self.source}: {where + '.' if where else ''}parameters: expected a mapping")
                for name in params:
                    if name not in known:
                        raise ChipadaptError(
                            f"{self.source}: {where + '.' if where else ''}parameters.{name}: unknown parameter "
                            f"(merge_method {self.method} reads {', '.join(known)})"
                        )

        check(data, RECIPE_KEYS, "")

        def check_model(model, keys, where: str) -> None:
            check(model, keys, where)
            if "lambda" in (model.get("parameters") or {}):
                # mergekit's DELLA once read it per model (the first model's), later versions only globally.
                raise ChipadaptError(
                    f"{self.source}: {where}.parameters.lambda: mergekit versions disagree on a per-model "
                    "lambda; give it once under the top-level parameters"
                )

        for i, model in enumerate(data.get("models") or []):
            check_model(model, MODEL_KEYS, f"models[{i}]")
        for i, piece in enumerate(data.get("slices") or []):
            check(piece, SLICE_KEYS, f"slices[{i}]")
            if piece.get("residual_weight") is not None:
                raise ChipadaptError(
                    f"{self.source}: slices[{i}].residual_weight: not supported (chipadapt merges whole models)"
                )
            for j, source in enumerate(piece.get("sources") or []):
                check_model(source, SOURCE_KEYS, f"slices[{i}].sources[{j}]")

    def _check_tokenizer(self, data: dict) -> None:
        """Only mergekit's union is what chipadapt writes; another tokenizer would not be the one published."""
        source = data.get("tokenizer_source")
        if source not in (None, "union"):
            raise ChipadaptError(f"{self.source}: tokenizer_source: {source!r} is not supported: {UNION}")
        tokenizer = data.get("tokenizer")
        if tokenizer is not None:
            if not isinstance(tokenizer, dict):
                raise ChipadaptError(f"{self.source}: tokenizer: expected a mapping, got {tokenizer!r}")
            for key, value in tokenizer.items():
                if key not in ("source", "tokens", "pad_to_multiple_of"):
                    raise ChipadaptError(
                        f"{self.source}: tokenizer.{key}: unknown key (known here: source, tokens, pad_to_multiple_of)"
                    )
                if key == "source" and value in (None, "union"):
                    continue
                if value is None:
                    continue
                what = f"{value!r} is not supported" if key == "source" else "is not supported"
                raise ChipadaptError(f"{self.source}: tokenizer.{key}: {what}: {UNION}")
        if data.get("chat_template") is not None:
            raise ChipadaptError(
                f"{self.source}: chat_template: not supported: the output keeps the chat template of the "
                "tokenizer it carries (remove the key, or edit chat_template.jinja in the output)"
            )

    def _dtype(self, data: dict, key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        name = str(value).removeprefix("torch.")
        if name not in DTYPES:
            raise ChipadaptError(f"{self.source}: {key}: {value!r} is not one of {', '.join(DTYPES)}")
        return name

    def _from_slices(self, slices) -> list:
        """One output slice whose sources span the same whole layer range: the `models` form spelled
        with slices (mergekit's own slerp example). Layer stacking has no chipadapt equivalent."""
        if len(slices) != 1:
            raise ChipadaptError(
                f"{self.source}: {len(slices)} slices: stacking layers (frankenmerges) is not supported"
            )
        (only,) = slices
        ranges = {tuple(s["layer_range"]) for s in only["sources"]}
        if len(ranges) != 1 or next(iter(ranges))[0] != 0:
            raise ChipadaptError(
                f"{self.source}: the slice's sources must all span the same layers from 0 (got {sorted(ranges)})"
            )
        self.layer_range = next(iter(ranges))
        self.base = only.get("base_model", self.base)
        self.slice_params = only.get("parameters") or {}
        return [(str(s["model"]), s.get("parameters") or {}) for s in only["sources"]]

    def parameter(self, name: str, model_params: dict | None, tensor: str, t: float, default=None):
        """mergekit's lookup order: the model's own setting, the slice's, then the global one."""
        for scope in (model_params or {}, self.slice_params, self.globals):
            if name in scope:
                value = evaluate(scope[name], tensor, t)
                if value is not None:
                    return value
        return default

    def roles(self) -> dict:
        """chip / instruct / base paths, by the conventions in the module docstring."""
        others = [m for m in self.models if m[0] != self.base]
        if self.method in INTERPOLATIONS:
            if not self.base or len(others) != 1:
                raise ChipadaptError(
                    f"{self.source}: {self.method} needs base_model (the instruct model) "
                    "and one other model (the chip model)"
                )
            return {"chip": others[0], "instruct": (self.base, {}), "base": None}
        # The base may be listed too (mergekit gives it no task vector); when it is one of the two
        # merged models (an instruct model that is also the ancestor), both stay listed.
        pair = self.models if len(self.models) == 2 else others
        if len(pair) != 2:
            raise ChipadaptError(
                f"{self.source}: {self.method} merges two models (the chip model first, then the "
                f"instruct model), besides base_model; got {len(pair)}"
            )
        if self.method in NEEDS_BASE and not self.base:
            raise ChipadaptError(f"{self.source}: {self.method} needs base_model")
        return {"chip": pair[0], "instruct": pair[1], "base": (self.base, {}) if self.base else None}


# --- in: mergekit YAML -> overrides --------------------------------------------------------------


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


# --- out: a chipadapt merge -> mergekit YAML --------------------------------------------------------


def _per_tensor(rows: list[dict], value_of) -> float | list[dict]:
    """A scalar when every tensor has the same value, else one filter per tensor (whole names,
    longest first, so a name that contains another is matched by its own rule)."""
    values = {row["tensor"]: value_of(row["lam"]) for row in rows}
    if len(set(values.values())) <= 1:
        return next(iter(values.values()), None)
    return [{"filter": name, "value": values[name]} for name in sorted(values, key=lambda n: (-len(n), n))]


def mergekit_recipe(cfg, rows: list[dict], out_dtype: str, tokenizer_source: str | None = None) -> dict:
    """The mergekit config of the merge `cfg` ran; `rows` are its per-tensor diagnostics (tensor, lam).
    `tokenizer_source`: "union" where the inputs' vocabularies differ in length (the longest one, ids
    unchanged, is their union; a token of one model only keeps that model's row, as chipadapt's)."""
    name, method = cfg.merge.name, cfg.merge.method
    chip, instruct, base = str(cfg.models.chip), str(cfg.models.instruct), cfg.models.base
    recipe: dict = {"merge_method": name}
    if name in INTERPOLATIONS:
        recipe["base_model"] = instruct
        recipe["models"] = [{"model": chip}, {"model": instruct}]
        recipe["parameters"] = {"t": _per_tensor(rows, float)}
    elif name in WEIGHTED:
        # 1 - 0.7 is 0.30000000000000004 in floats: written as the 0.3 a person would (15 digits still
        # tell any two float64 weights a merge could be given apart).
        per_model = [
            {"weight": _per_tensor(rows, float)},
            {"weight": _per_tensor(rows, lambda lam: float(f"{1.0 - lam:.15g}"))},
        ]
        if name in ("ties", "della"):
            for params in per_model:
                params["density"] = float(method.density)
                if name == "della":
                    params["epsilon"] = float(method.epsilon)
        recipe["models"] = [
            {"model": chip, "parameters": per_model[0]},
            {"model": instruct, "parameters": per_model[1]},
        ]
        if base:
            recipe["base_model"] = str(base)
        if name != "linear":
            recipe["parameters"] = {"lambda": float(method.scale), "normalize": NORMALIZE_DEFAULT[name]}
        else:
            recipe["parameters"] = {"normalize": True}
    else:
        raise ChipadaptError(f"merge={name}: no mergekit equivalent is known")
    recipe["dtype"] = "float32"  # the merge math; mergekit's out_dtype is what gets written
    recipe["out_dtype"] = out_dtype
    if tokenizer_source:
        recipe["tokenizer_source"] = tokenizer_source
    return recipe


HEADER = """\
# The merge chipadapt ran, as a mergekit config (merge.py config=THIS_FILE runs it again here).
# {note}
"""
NOTES = {
    "chipalign": "chipalign is ChipAlign's geodesic merge (arXiv 2412.19819), a custom method: mergekit has no "
    "built-in of that name. t is the chip model's weight; base_model is the instruct model.",
    "slerp": "t is the chip model's weight; base_model is the instruct model (t=0).",
    "della": "chipadapt's DELLA draws its drop mask from merge.method.seed; mergekit draws its own, so "
    "tensors agree in distribution, not bit for bit.",
}


def write_mergekit_config(
    dest: Path, cfg, rows: list[dict], out_dtype: str, tokenizer_source: str | None = None
) -> None:
    note = NOTES.get(cfg.merge.name, "The first model is the chip model, the second the instruct model.")
    text = HEADER.format(note=note) + yaml.safe_dump(
        mergekit_recipe(cfg, rows, out_dtype, tokenizer_source), sort_keys=False, default_flow_style=None
    )
    Path(dest).write_text(text)
