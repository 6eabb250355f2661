"""A prompt and its reply fitted into a model's context (`max_position_embeddings`): positions past it
are ones the model never saw in training, where transformers only warns ("exceeded the model's
predefined maximum length") and the reply is garbage. chat.py's history and bootstrap's prompts share
this rule: the reply keeps `max_new_tokens` positions, or half the context where that asks for more;
the earliest user/assistant turns are left out of a prompt that leaves less; a prompt whose last turn
alone leaves no room is not asked at all."""

from collections.abc import Callable


def model_context(model) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def reply_room(context: int, max_new_tokens: int) -> int:
    """The positions kept for the reply."""
    return min(int(max_new_tokens), context // 2)


def reply_tokens(context: int | None, max_new_tokens: int, prompt_tokens: int) -> int:
    """max_new_tokens, cut to the positions the context has left after the prompt."""
    wanted = int(max_new_tokens)
    return wanted if context is None else max(1, min(wanted, context - prompt_tokens))


def earliest_kept(history: list[dict], tokens: Callable[[list[dict]], int], room: int, start: int = 0) -> int:
    """The first message of `history` a prompt of at most `room` tokens holds, from `start` on, leaving
    out a user turn and what follows it up to the next user turn at a time (two user turns in a row are two
    steps): a kept prompt never starts with an assistant turn, which no template renders as a first turn;
    `tokens(messages)`: the prompt's length with those."""
    window = start
    while window < len(history) and tokens(history[window:]) > room:
        window += 1
        while window < len(history) and history[window].get("role") != "user":
            window += 1
    return window


def system_too_long(
    messages: list[dict], tokens: Callable[[list[dict]], int], context: int | None, max_new_tokens: int
) -> bool:
    """The conversation's system turn alone (with an empty user turn) leaves the reply no room: no prompt
    of it fits, whatever is left out, and what to shorten is the system prompt."""
    if context is None or not messages or messages[0].get("role") != "system":
        return False
    room = context - reply_room(context, max_new_tokens)
    return tokens(messages[:1] + [{"role": "user", "content": ""}]) > room


def fitted_prompt(
    messages: list[dict], tokens: Callable[[list[dict]], int], context: int | None, max_new_tokens: int
) -> tuple[list[dict] | None, int]:
    """(the messages a prompt holds, how many earlier ones it left out) for a conversation ending in the
    user's turn, its system turn kept; (None, 0) when the last turn alone leaves the reply no room."""
    if context is None:
        return messages, 0
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns, last = messages[len(system) : -1], messages[-1:]
    room = context - reply_room(context, max_new_tokens)
    if tokens(system + last) > room:
        return None, 0
    window = earliest_kept(turns, lambda kept: tokens(system + kept + last), room)
    return system + turns[window:] + last, min(window, len(turns))
