"""What an extended tokenizer must keep of its base: the same text back from every document (and no
more tokens on general text), the same special tokens and chat template, the entries it was given."""

from tokenizers import Tokenizer

from chipadapt.errors import ChipadaptError


def check_round_trip(
    base: Tokenizer, extended: Tokenizer, texts: list[str], kind: str, not_longer: bool = False
) -> None:
    # Extension must decode exactly as the base does (the base itself may drop bytes its
    # vocabulary lacks; that is the base's property, not ours); on general text it must never
    # need more tokens than the base.
    for i, (old, new) in enumerate(zip(base.encode_batch(texts), extended.encode_batch(texts))):
        if extended.decode(new.ids) != base.decode(old.ids):
            raise ChipadaptError(f"tokenizer: round trip differs from the base tokenizer on {kind} document {i}")
        if not_longer and len(new.ids) > len(old.ids):
            raise ChipadaptError(f"tokenizer: {kind} document {i} needs more tokens than with the base tokenizer")


def check_specials(before, after, added: int) -> None:
    if after.all_special_tokens != before.all_special_tokens or after.chat_template != before.chat_template:
        raise ChipadaptError("tokenizer: extension changed the special tokens or the chat template")
    if len(after) != len(before) + added:
        raise ChipadaptError(f"tokenizer: expected {len(before) + added} entries, got {len(after)}")
