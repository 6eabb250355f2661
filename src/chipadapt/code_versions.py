"""Versions of the code whose output is cached or recorded: bumped when the same inputs give a different
result. They are in the cache keys of what that code builds (models/locate.py, tokenizer/augment.py)
and in the reproduction ledger's record of every step (reproduce/ledger.py), so nothing built by
earlier code is reused or counted as done. Kept here, free of heavy imports, for the ledger to read."""

# The GGUF -> Hugging Face conversion (models/gguf_import.py). 2: the base pre-tokenizer is kept
# (SmolLM2: every digit alone).
CONVERSION_VERSION = 2

# The augmented tokenizer's choice of new tokens (tokenizer/produced.py, select_tokens.py). 1: every
# selected candidate kept; 2: those the final tokenizer never produces dropped and refilled; 3: also
# those that realise fewer than min_savings saved tokens on the selection words.
SELECTION_VERSION = 3


def code_versions() -> dict[str, int]:
    """The stamp a reproduction step is recorded with."""
    return {"conversion": CONVERSION_VERSION, "selection": SELECTION_VERSION}
