"""Which code versions (code_versions.py) a reproduction step's results depend on.

The ledger stamps every step with every version, but a step is run again only for a version of code it
ran: a new tokenizer selection reruns the tokenizer step and the steps built on its tokenizer, not the
base-tokenizer DAPT runs or the merges; a new GGUF conversion reruns the steps whose model came from the
converted folder, none where the reproduction's model is no GGUF (model=tiny). Before, any bump reran
every step of a completed reproduction."""

from omegaconf import DictConfig, OmegaConf

CONVERSION, SELECTION = "conversion", "selection"
# The model sources whose folder is a conversion (models/gguf_import.py); a string, not an import:
# steps.py reads it before anything heavy is loaded.
GGUF_SOURCES = ("chipadapt.models.gguf_import.GgufPackageModel",)
# The arguments of a step that builds or trains with an augmented tokenizer (train.py's tokenizer group).
SELECTION_ARGS = ("stage=tokenizer", "tokenizer=augmented")


def kind(key: str) -> str:
    """The code a stamp key versions: "conversion" for "conversion" and any per-GGUF "conversion..." key;
    a key of other code is its own kind (and applies to every step: nothing here says otherwise)."""
    for known in (CONVERSION, SELECTION):
        if key.startswith(known):
            return known
    return key


def applies(key: str, scope: frozenset[str] | None) -> bool:
    """Whether the stamp key `key` matters for a step of `scope` (None: a step made by hand, every key)."""
    return scope is None or kind(key) not in (CONVERSION, SELECTION) or kind(key) in scope


def converted_model(cfg: DictConfig) -> bool:
    """The reproduction's model is a GGUF converted into a cached folder (`base_model`)."""
    return not OmegaConf.select(cfg, "model.path") and OmegaConf.select(cfg, "model.source._target_") in GGUF_SOURCES


def own_scope(script: str, args: list[str], converted: bool, base_model: str | None) -> set[str]:
    """The versions a step's own command depends on. Selection: it builds the augmented tokenizer or
    trains with it. Conversion: it starts from the converted model, which train.py and evaluate.py take
    from the model config unless `model.path` names another folder, and merge.py by the folder's path."""
    scope = set()
    if any(arg in SELECTION_ARGS for arg in args):
        scope.add(SELECTION)
    if converted:
        names_base = bool(base_model) and any(base_model in arg for arg in args)
        own_model = script != "merge.py" and not any(arg.startswith("model.path=") for arg in args)
        if names_base or own_model:
            scope.add(CONVERSION)
    return scope


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
