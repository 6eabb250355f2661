"""Which code versions (code_versions.py) a reproduction step's results depend on.

The ledger stamps every step with every version, but a step is run again only for a version of code it
ran: a new tokenizer selection reruns the tokenizer step and the steps built on its tokenizer, not the
base-tokenizer DAPT runs or the merges; a new GGUF conversion reruns the steps whose model came from the
converted folder, none where the reproduction's model is no GGUF (model=tiny); a new held-out rule for
conversations reruns the train.py steps whose data has a source held out by group (`group_by`: OASST) and
the steps built on them (annotate, steer_probe, their evaluations), not DAPT or the retriever. Before, any
bump reran every step of a completed reproduction."""

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

CONVERSION, SELECTION, HELDOUT = "conversion", "selection", "heldout"
SCOPED = (CONVERSION, SELECTION, HELDOUT)
# The config tree train.py composes (the repository's conf/, where reproduce.py runs its steps).
CONF = Path(__file__).resolve().parents[3] / "conf"
# The model sources whose folder is a conversion (models/gguf_import.py); a string, not an import:
# steps.py reads it before anything heavy is loaded.
GGUF_SOURCES = ("chipadapt.models.gguf_import.GgufPackageModel",)
# The arguments of a step that builds or trains with an augmented tokenizer (train.py's tokenizer group).
SELECTION_ARGS = ("stage=tokenizer", "tokenizer=augmented")


def kind(key: str) -> str:
    """The code a stamp key versions: "conversion" for "conversion" and any per-GGUF "conversion..." key;
    a key of other code is its own kind (and applies to every step: nothing here says otherwise)."""
    for known in SCOPED:
        if key.startswith(known):
            return known
    return key


def applies(key: str, scope: frozenset[str] | None) -> bool:
    """Whether the stamp key `key` matters for a step of `scope` (None: a step made by hand, every key)."""
    return scope is None or kind(key) not in SCOPED or kind(key) in scope


def converted_model(cfg: DictConfig) -> bool:
    """The reproduction's model is a GGUF converted into a cached folder (`base_model`)."""
    return not OmegaConf.select(cfg, "model.path") and OmegaConf.select(cfg, "model.source._target_") in GGUF_SOURCES


def own_scope(script: str, args: list[str], converted: bool, base_model: str | None) -> set[str]:
    """The versions a step's own command depends on. Selection: it builds the augmented tokenizer or
    trains with it. Conversion: it starts from the converted model, which train.py and evaluate.py take
    from the model config unless `model.path` names another folder, and merge.py by the folder's path.
    Held-out rule: a train.py step whose data has a source held out by group (grouped_sources)."""
    scope = set()
    if any(arg in SELECTION_ARGS for arg in args):
        scope.add(SELECTION)
    if script == "train.py" and grouped_sources(args):
        scope.add(HELDOUT)
    if converted:
        names_base = bool(base_model) and any(base_model in arg for arg in args)
        own_model = script != "merge.py" and not any(arg.startswith("model.path=") for arg in args)
        if names_base or own_model:
            scope.add(CONVERSION)
    return scope


def _defaults(path: Path) -> list:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError:
        return []
    return config.get("defaults") or [] if isinstance(config, dict) else []


def stage_data(stage: str, conf: Path = CONF) -> str | None:
    """The data config conf/stage/<stage>.yaml composes (`override /data: X`, or that of a stage it builds on)."""
    for entry in _defaults(conf / "stage" / f"{stage}.yaml"):
        if isinstance(entry, dict) and "override /data" in entry:
            return entry["override /data"]
        if isinstance(entry, str) and entry != "_self_":
            found = stage_data(entry, conf)
            if found:
                return found
    return None


def grouped_sources(args: list[str], conf: Path = CONF) -> set[str]:
    """The data sources of a train.py command that hold conversations out by group (`group_by` set in its
    data config or on the command line, not nulled there). Without the config tree (an installed package,
    no conf/): every train.py step, so that a step is run again rather than counted done on the old rule."""
    if not conf.is_dir():
        return {"?"}
    given = dict(arg.lstrip("+").split("=", 1) for arg in args if "=" in arg)
    stage = given.get("stage", "dapt")
    data = given.get("data") or stage_data(stage, conf)
    sources = {}
    if data:
        try:
            sources = (yaml.safe_load((conf / "data" / f"{data}.yaml").read_text()) or {}).get("sources") or {}
        except OSError:
            sources = {}
    grouped = {name for name, source in sources.items() if isinstance(source, dict) and source.get("group_by")}
    grouped |= {
        key.split(".")[2]
        for key, value in given.items()
        if key.startswith("data.sources.")
        and key.endswith(".group_by")
        and key.count(".") == 3
        and value not in ("null", "")
    }
    nulled = {
        key.split(".")[2]
        for key, value in given.items()
        if key.count(".") == 2 and key.startswith("data.sources.") and value == "null"
    }
    nulled |= {
        key.split(".")[2]
        for key, value in given.items()
        if key.count(".") == 3
        and key.startswith("data.sources.")
        and key.endswith(".group_by")
        and value in ("null", "")
    }
    return grouped - nulled


def with_needs(scopes: dict[str, set[str]], needs: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    """Each step's scope with those of the steps it needs, and theirs: an evaluation of the augmented
    tokenizer's DAPT model depends on the selection that tokenizer was built with."""
    changed = True
    while changed:  # a fixpoint: `needs` may name a step configured later
        changed = False
        for name, wanted in needs.items():
            for need in wanted:
                extra = scopes.get(need, set()) - scopes[name]
                if extra:
                    scopes[name] |= extra
                    changed = True
    return {name: frozenset(scope) for name, scope in scopes.items()}
