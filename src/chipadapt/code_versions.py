"""Versions of the code whose output is cached or recorded: bumped when the same inputs give a different
result. They are in the cache keys of what that code builds (models/locate.py, tokenizer/augment.py)
and in the reproduction ledger's record of every step (reproduce/ledger.py), so nothing built by
earlier code is reused or counted as done. Kept here, free of heavy imports, for the ledger to read."""

# The GGUF -> Hugging Face conversion (models/gguf_import.py). 2: the base pre-tokenizer is kept
# (SmolLM2: every digit alone).
CONVERSION_VERSION = 2
# GGUF pre-tokenizer names (`tokenizer.ggml.pre`) whose conversion changed after CONVERSION_VERSION, with
# the version of that change. Only a GGUF of such a name gets it in its folder's cache key
# (conversion_version): raising CONVERSION_VERSION instead would convert SmolLM2's GGUF (`smollm`, converted
# the same way) again and rerun every recorded reproduction step, whose stamp it is. 3: mapped to digits
# then byte-level, as llama.cpp splits them (version 2 left them plain byte-level: digits joined).
PRE_TOKENIZER_CONVERSION = {"command-r": 3, "codeshell": 3, "exaone": 3, "minerva-7b": 3}

# The augmented tokenizer's choice of new tokens (tokenizer/produced.py, select_tokens.py). 1: every
# selected candidate kept; 2: those the final tokenizer never produces dropped and refilled; 3: also
# those that realise fewer than min_savings saved tokens on the selection words.
SELECTION_VERSION = 4  # 4: copies of held-out documents left out of selection and windows

# The redaction rules (curation/redaction*.py) as passages built with `passages.redact` apply them: in the
# retriever stage's passages record (retrieval/built_inputs.py), so that passages redacted by older rules
# are built again. Raise it with every change to what curation/redaction*.py replaces.
REDACTION_VERSION = 4  # 2: a Kubernetes Secret's values, Docker logins, process-like passwords; 3: a Secret's
# every value as JSON, a flow map or escaped JSON (certificates too), `*...` passwords with no anchor; 4: secret
# assignments and Secret data in JSON escaped once or more (kubectl's last-applied annotation)

# How conversations are held out of SFT, SteerLM and the attribute model (data/conversations.py group_by).
# 2: a source's `group_by` group (OASST: the message tree) held out whole; 1 held each thread out by its own
# id, so siblings of a held-out thread trained (its figures partly in-sample). Reproduction steps that train
# on such a source, and those built on them, run again (reproduce/code_scope.py).
HELDOUT_VERSION = 2


def conversion_version(pre_tokenizer: str | None) -> int:
    """The conversion version of a GGUF whose `tokenizer.ggml.pre` is `pre_tokenizer` (None: none read)."""
    return max(CONVERSION_VERSION, PRE_TOKENIZER_CONVERSION.get(pre_tokenizer or "", 0))


def code_versions(pre_tokenizer: str | None = None) -> dict[str, int]:
    """The stamp a reproduction step is recorded with. `pre_tokenizer`: the `tokenizer.ggml.pre` of the GGUF
    the reproduction's model is converted from (models/gguf_import.py gguf_pre_tokenizer_name), whose own
    conversion version the stamp carries: a command-r GGUF's steps from before its version 3 then run again,
    a SmolLM2 one's (`smollm`) stay done. None: no GGUF, or its name is not known."""
    return {"conversion": conversion_version(pre_tokenizer), "selection": SELECTION_VERSION, "heldout": HELDOUT_VERSION}
