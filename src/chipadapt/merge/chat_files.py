"""How the merged model is prompted and when it stops: its chat template and generation_config.json.

The tokenizer files come whole from the input whose vocabulary the output carries (merge/vocabulary.py),
usually the chip model. A chip model trained by DAPT of a base model (ChipNeMo's case) has no chat
template, and its generation_config is the base model's; yet the merged model is there to follow
instructions as the instruct model does. So each of the two is taken from the model that has one, and
where both have one and they differ, from `merge.chat_template_from` (conf/merge.yaml: instruct|chip). The
vocabulary stays the one chosen for the rows; only the template (a tokenizer_config.json key or
chat_template.jinja) and generation_config.json are replaced.

`merge.chat_template` (set by a mergekit recipe's `chat_template`: merge/mergekit_config.py) chooses the
template as mergekit does: `auto` takes the one most of the inputs read have (mergekit's plurality over
its referenced models; a dict of named templates counts by its `default`, whitespace at the ends is
stripped), a tie going to the first of chip, instruct, base. mergekit builds its list of referenced
models from a set, so which of tied templates it takes follows hash order: on a tie, the
mergekit_config.yml a merge writes names the chosen template's text, not `auto`
(merge/mergekit_export.py). Where several inputs hold the template `auto` took, it is taken from the one
`chat_template_from` names if it is among them, else from the first. generation_config.json comes with
the template, from that input, or where it has none from another input holding the same template (base
included): the two together say how a turn ends. Where no input has a template, both are chosen as
without the key. Any other value is the Jinja template itself. mergekit also takes
a name of a template it bundles (chatml, llama3, ...): chipadapt carries none of them, so a name is
refused, with the Jinja text asked for instead.
"""

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)

CHOICES = ("instruct", "chip")
AUTO = "auto"
# The templates mergekit bundles (mergekit/_data/chat_templates), by the names its recipes give them.
MERGEKIT_NAMES = ("alpaca", "chatml", "exaone", "llama3")
# mergekit's test of a template given inline: a value shorter than this, or without "{", is a name.
SHORTEST_TEMPLATE = 20
JINJA = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"
# Written by whichever transformers saved the folder: not a difference between two configs.
GENERATION_IGNORED = ("transformers_version", "_from_model_config")


def chat_template_of(folder: Path):
    """The folder's chat template as transformers reads it: chat_template.jinja first, else the
    tokenizer_config.json key (a string, or a list of named templates); None when it has none."""
    if (folder / JINJA).is_file():
        try:
            return (folder / JINJA).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:  # transformers reads it as UTF-8 too
            raise ChipadaptError(f"{folder / JINJA}: not a readable UTF-8 chat template ({err})") from None
    config = _json(folder / TOKENIZER_CONFIG)
    return (config or {}).get("chat_template") or None


def generation_config_of(folder: Path) -> dict | None:
    config = _json(folder / GENERATION_CONFIG)
    return None if config is None else {k: v for k, v in config.items() if k not in GENERATION_IGNORED}


def choose(values: dict, prefer: str) -> tuple[str | None, str]:
    """(the model key to take a file from or None, why); `values`: its content by model key (chip, instruct)."""
    present = {key: value for key, value in values.items() if value is not None}
    if not present:
        return None, "neither input has one"
    if len(present) == 1:
        key = next(iter(present))
        return key, f"only {key} has one"
    if values["models.chip"] == values["models.instruct"]:
        return "models.chip", "the same in both inputs"
    return f"models.{prefer}", f"both inputs have one and they differ; merge.chat_template_from={prefer}"


def check_chat_template_from(prefer) -> None:
    if prefer not in CHOICES:
        raise ChipadaptError(f"merge.chat_template_from: {prefer!r} is not one of {', '.join(CHOICES)}")


def check_chat_template(value, key: str = "merge.chat_template") -> None:
    """A `merge.chat_template` chipadapt can honour: null, auto, or a Jinja template transformers compiles."""
    if value is None or value == AUTO:
        return
    if not isinstance(value, str):
        raise ChipadaptError(f"{key}: {value!r} is neither {AUTO} nor a Jinja chat template")
    if len(value) < SHORTEST_TEMPLATE or "{" not in value:
        if value in MERGEKIT_NAMES:
            raise ChipadaptError(
                f"{key}: {value!r} names a template bundled with mergekit, which chipadapt does not carry: give "
                f"the template's Jinja text instead, or {AUTO} (the one most inputs have)"
            )
        raise ChipadaptError(
            f"{key}: {value!r} is neither {AUTO} nor a Jinja chat template (mergekit reads a value under "
            f"{SHORTEST_TEMPLATE} characters or without '{{' as the name of a template it bundles; chipadapt "
            "carries none of those)"
        )
    from jinja2 import TemplateError

    compiler = _transformers_compiler()
    try:
        _compile(value, compiler)
    except TemplateError as err:
        line = f" line {err.lineno}" if getattr(err, "lineno", None) else ""
        if compiler is not None:
            raise ChipadaptError(
                f"{key}: not a Jinja template transformers can compile ({err.message}{line})"
            ) from None
        raise ChipadaptError(
            f"{key}: jinja2's sandbox cannot compile it as a Jinja template ({err.message}{line}; transformers' "
            "own compiler was not found)"
        ) from None


def _transformers_compiler():
    """transformers' chat template compiler (its tags and filters: {% generation %}, tojson), or None
    where a release moved it or changed how it is called: it is private to transformers. Its signature is
    checked before the call, so that a TypeError the compiler raises is not taken for a changed one."""
    import inspect

    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError as err:
        found = f"{err}"
    else:
        try:
            inspect.signature(_compile_jinja_template).bind("template")
            return _compile_jinja_template
        except (TypeError, ValueError):  # ValueError: no signature to read
            found = f"_compile_jinja_template{_signature(_compile_jinja_template)} takes no template alone"
    log.warning(
        "merge: transformers' chat template compiler is not where chipadapt looks (%s): the template is "
        "checked by jinja2's sandbox instead, which does not know transformers' own tags",
        found,
    )
    return None


def _signature(function) -> str:
    import inspect

    try:
        return str(inspect.signature(function))
    except (TypeError, ValueError):
        return "(?)"


def _compile(template: str, compiler) -> None:
    """Compile `template` with `compiler` (_transformers_compiler's), raising jinja2's TemplateError;
    without one, with jinja2's sandbox and transformers' loop controls (a template using transformers'
    own tags is then refused where transformers would take it, and the refusal says which compiled it)."""
    if compiler is not None:
        compiler(template)
        return
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    ).from_string(template)


def _comparable(template) -> str | None:
    """A template as mergekit's `auto` counts it: the `default` of a set of named ones, ends stripped."""
    if isinstance(template, list):  # tokenizer_config.json's form of transformers' dict of named templates
        template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    if isinstance(template, dict):
        template = template.get("default")
    return template.strip() if isinstance(template, str) and template.strip() else None


def most_common_template(models: list) -> tuple[str | None, str | None, str]:
    """mergekit's `auto`: (the template most of `models` have, the key of the first that has it, why);
    (None, None, why) where none has one. `models` come in the order chip, instruct, base: on a tie the
    first of them that has a tied template wins. mergekit itself lists its models from a set, so its
    choice among tied templates follows hash order (auto_is_a_tie: the recipe written names the text)."""
    found = {m.key: _comparable(chat_template_of(m.folder)) for m in models}
    counts = Counter(t for t in found.values() if t is not None)
    if not counts:
        return None, None, f"merge.chat_template={AUTO}: no input has one"
    template, n = counts.most_common(1)[0]  # equal counts: the first found, in the order of `models`
    key = next(k for k, t in found.items() if t == template)
    if _tied(counts):
        return (
            template,
            key,
            f"merge.chat_template={AUTO}: a tie: the first of chip, instruct, base ({n} of {len(found)} inputs each)",
        )
    return template, key, f"merge.chat_template={AUTO}: the most common of the inputs' ({n} of {len(found)})"


def auto_is_a_tie(models: list) -> bool:
    """Whether mergekit's `auto` over `models` finds two templates equally common (its pick is then
    hash order)."""
    return _tied(Counter(t for m in models if (t := _comparable(chat_template_of(m.folder))) is not None))


def _tied(counts: Counter) -> bool:
    top = counts.most_common(2)
    return len(top) == 2 and top[0][1] == top[1][1]


def take_chat_files(tmp: Path, copied_from, chip, instruct, prefer: str, setting=None, base=None) -> dict:
    """Replace the chat template and generation_config.json in the output being written (`tmp`, which
    holds the tokenizer files of `copied_from`) by the ones chosen; what was chosen, for the manifest.
    `setting`: merge.chat_template; `base`: models.base where the merge reads it (one of auto's inputs)."""
    check_chat_template_from(prefer)
    check_chat_template(setting)
    models = {m.key: m for m in (chip, instruct)}
    templates = {key: chat_template_of(m.folder) for key, m in models.items()}
    template_from, template_why = choose(templates, prefer)
    chosen_text = templates[template_from] if template_from is not None else None
    inputs = {m.key: m for m in (chip, instruct, base) if m}
    carriers: list[str] = []  # under auto: the inputs holding the template it took, the one taken first
    if setting == AUTO:
        voted, _, voted_why = most_common_template(list(inputs.values()))
        if voted is not None:
            carriers = [key for key, m in inputs.items() if _comparable(chat_template_of(m.folder)) == voted]
            if f"models.{prefer}" in carriers and carriers[0] != f"models.{prefer}":
                # Several inputs hold it: chat_template_from names the one it is taken from, and so
                # the generation_config.json that goes with it, as it does where auto is not set.
                carriers.remove(f"models.{prefer}")
                carriers.insert(0, f"models.{prefer}")
                voted_why = f"{voted_why}; merge.chat_template_from={prefer} among the inputs that have it"
            chosen_text, template_from, template_why = voted, carriers[0], voted_why
        else:
            template_why = f"{voted_why}; {template_why}"
    elif setting is not None:
        chosen_text, template_from, template_why = setting, "merge.chat_template", "given (mergekit's chat_template)"
    if template_from is not None and chosen_text != chat_template_of(copied_from.folder):
        _write_template(tmp, chosen_text)
    elif template_from is None and chat_template_of(copied_from.folder) is not None:
        template_from = copied_from.key  # models.base's, which carries the vocabulary
    # The template's own stop tokens: an instruct model's eos list beside the chip model's template (or
    # the reverse) ends turns at a token that template never writes. So the generation_config.json of an
    # input holding the template auto took, the one it was taken from first.
    with_config = [key for key in carriers if generation_config_of(inputs[key].folder) is not None]
    if with_config and with_config[0] == template_from:
        config_from, config_why = template_from, f"the input merge.chat_template={AUTO} took the template from"
    elif with_config:
        config_from = with_config[0]
        config_why = (
            f"it holds the template merge.chat_template={AUTO} took, as {template_from} does, which has no "
            f"{GENERATION_CONFIG}"
        )
    else:
        config_from, config_why = choose({key: generation_config_of(m.folder) for key, m in models.items()}, prefer)
    if config_from is not None and config_from != copied_from.key:
        shutil.copy2(inputs[config_from].folder / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
    elif config_from is None and (tmp / GENERATION_CONFIG).is_file():
        config_from = copied_from.key
    chosen = {
        "chat_template": {"from": template_from, "why": template_why},
        "generation_config": {"from": config_from, "why": config_why},
    }
    log.info(
        "merge: chat template from %s (%s); generation_config.json from %s (%s)",
        template_from or "no input",
        template_why,
        config_from or "no input",
        config_why,
    )
    return chosen


def _write_template(tmp: Path, template) -> None:
    """The template where transformers 5 reads it (chat_template.jinja; make_portable copies it into
    tokenizer_config.json for 4.x), or, for a list of named templates, in tokenizer_config.json."""
    config_path = tmp / TOKENIZER_CONFIG
    config = _json(config_path)
    (tmp / JINJA).unlink(missing_ok=True)
    if isinstance(template, str):
        (tmp / JINJA).write_text(template, encoding="utf-8")
        if config is None or "chat_template" not in config:
            return
        del config["chat_template"]  # the copied model's, which transformers 4.x would read
    else:
        config = {**(config or {}), "chat_template": template}
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ChipadaptError(f"{path}: not readable JSON ({err})") from None
    return value if isinstance(value, dict) else None
