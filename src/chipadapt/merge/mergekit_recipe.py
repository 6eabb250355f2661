"""A user's mergekit recipe, read and checked: its keys, its models' roles, its parameters per tensor.

merge/mergekit_config.py turns it into chipadapt overrides; merge/mergekit_export.py writes the
recipe of a chipadapt merge. Both follow the conventions below.

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
- mergekit's `chat_template` (auto, or a Jinja template) is `merge.chat_template` (merge/chat_files.py);
  a merge without one writes the template its output carries, so mergekit, which otherwise keeps its
  donor tokenizer's (base_model's, else the first model's), publishes the same one.

Every key of a recipe is honoured or refused: mergekit's pydantic models ignore keys they do not know,
but a misspelt `densty` or a tokenizer setting left out would merge something else than the recipe says.
"""

import re

from chipadapt.errors import ChipadaptError
from chipadapt.merge.chat_files import check_chat_template

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
            at = f"{self.source}: {where}." if where else f"{self.source}: "
            for key in node:
                if key not in keys:
                    raise ChipadaptError(f"{at}{key}: unknown key (known here: {', '.join(keys)})")
            params = node.get("parameters")
            if "parameters" in keys and params is not None:
                if not isinstance(params, dict):
                    raise ChipadaptError(f"{at}parameters: expected a mapping")
                for name in params:
                    if name not in known:
                        raise ChipadaptError(
                            f"{at}parameters.{name}: unknown parameter "
                            f"(merge_method {self.method} reads {', '.join(known)})"
                        )

        check(data, RECIPE_KEYS, "")

        def entries(node: dict, key: str, where: str) -> list:
            """A list of the recipe (models, slices, a slice's sources); an absent one is empty."""
            value = node.get(key)
            if value is None:
                return []
            if not isinstance(value, list):
                raise ChipadaptError(f"{self.source}: {where}: expected a list, got {value!r}")
            return value

        def check_model(model, keys, where: str) -> None:
            check(model, keys, where)
            name = model.get("model")
            if not isinstance(name, str) or not name:
                got = "it is missing" if "model" not in model else f"got {name!r}"
                raise ChipadaptError(f"{self.source}: {where}.model: expected a model's path or name, {got}")
            if "lambda" in (model.get("parameters") or {}):
                # mergekit's DELLA once read it per model (the first model's), later versions only globally.
                raise ChipadaptError(
                    f"{self.source}: {where}.parameters.lambda: mergekit versions disagree on a per-model "
                    "lambda; give it once under the top-level parameters"
                )

        for i, model in enumerate(entries(data, "models", "models")):
            check_model(model, MODEL_KEYS, f"models[{i}]")
        for i, piece in enumerate(entries(data, "slices", "slices")):
            check(piece, SLICE_KEYS, f"slices[{i}]")
            if piece.get("residual_weight") is not None:
                raise ChipadaptError(
                    f"{self.source}: slices[{i}].residual_weight: not supported (chipadapt merges whole models)"
                )
            sources = entries(piece, "sources", f"slices[{i}].sources")
            if not sources:
                raise ChipadaptError(
                    f"{self.source}: slices[{i}].sources: a slice lists its models there "
                    "([{model: ..., layer_range: [0, N]}, ...]); it has none"
                )
            for j, source in enumerate(sources):
                where = f"slices[{i}].sources[{j}]"
                check_model(source, SOURCE_KEYS, where)
                self._check_layer_range(source.get("layer_range"), f"{where}.layer_range")

    def _check_layer_range(self, value, where: str) -> None:
        """mergekit's [start, end): two whole numbers, end past start."""
        whole = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not whole or len(value) != 2 or not 0 <= value[0] < value[1]:
            got = "it is missing" if value is None else f"got {value!r}"
            raise ChipadaptError(
                f"{self.source}: {where}: expected [start, end], the layers taken (end excluded), {got}"
            )

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
        self.chat_template = data.get("chat_template") or None  # mergekit: empty is unset
        check_chat_template(self.chat_template, f"{self.source}: chat_template")

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
