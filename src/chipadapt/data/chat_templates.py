"""Render conversations to text and find the character spans the loss is computed on.

Two families, selected in config (train.py `data/template=model|chipnemo`; chat.py
`data/template@template=model|chipnemo`):
- `ModelChatTemplate`: the tokenizer's own chat template (Jinja). The span of assistant turn i is
  the text that rendering turns [0..i] adds to rendering turns [0..i-1] with the generation prompt:
  the reply and its end-of-turn marker, whatever the template looks like.
- `StringTemplate`: a template written in config, e.g. ChipNeMo's `<extra_id_0>System ...` format.

Spans are character offsets; `tokenize_with_labels` maps them onto tokens through the tokenizer's
offset mapping, so a template that tokenises differently in context cannot shift the mask.
"""

import json
from dataclasses import dataclass

from chipadapt.data.conversations import LATER_SYSTEM
from chipadapt.errors import ChipadaptError

USE_CHIPNEMO = "use ChipNeMo's format: train.py data/template=chipnemo, chat.py data/template@template=chipnemo"


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: list[tuple[int, int]]  # [start, end) of the text the model learns to produce


def first_system(messages: list[dict], default: str | None) -> str | None:
    """The conversation's system message (its first turn), else `default`. A later one is refused, as
    the data loader refuses it (data/conversations.py): both templates would otherwise drop it."""
    for number, message in enumerate(messages, 1):
        if message["role"] == "system" and number > 1:
            raise ChipadaptError(LATER_SYSTEM.format(number=number))
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else default


def attribute_string(attributes: dict | None, order: list[str] | None = None) -> str:
    """SteerLM's attribute string, e.g. `quality:4,toxicity:0,humor:0` (keys in `order`, then sorted)."""
    if not attributes:
        return ""
    keys = [k for k in (order or []) if k in attributes] + sorted(k for k in attributes if k not in (order or []))
    return ",".join(f"{k}:{int(round(float(attributes[k])))}" for k in keys)


class ModelChatTemplate:
    """The model's own chat template; attributes (SteerLM) go into the system prompt, which is masked."""

    def __init__(self, tokenizer, attribute_prefix: str, default_system: str | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise ChipadaptError(f"data/template=model: this tokenizer has no chat template ({USE_CHIPNEMO})")
        self.tokenizer, self.attribute_prefix, self.default_system = tokenizer, attribute_prefix, default_system

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def with_system(self, messages: list[dict], attributes: str) -> list[dict]:
        system = first_system(messages, self.default_system)
        rest = [m for m in messages if m["role"] != "system"]
        if attributes:
            system = (
                f"{system}\n{self.attribute_prefix}{attributes}" if system else f"{self.attribute_prefix}{attributes}"
            )
        return ([{"role": "system", "content": system}] if system else []) + rest

    def render(self, messages: list[dict], attributes: str = "") -> Rendered:
        messages = self.with_system(messages, attributes)
        text = self._render(messages, False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self._render(messages[:i], True)
            through = self._render(messages[: i + 1], False)
            if not text.startswith(through) or not through.startswith(before):
                raise ChipadaptError(
                    "data/template=model: the chat template does not render conversations as prefixes of each other "
                    f"({USE_CHIPNEMO})"
                )
            spans.append((len(before), len(through)))
        return Rendered(text, spans)

    def prompt(self, messages: list[dict], attributes: str = "") -> str:
        """The text a model continues to answer (generation)."""
        return self._render(self.with_system(messages, attributes), True)


# Written in a template's `assistant_end`, the tokenizer's end-of-sequence token (ChipNeMo: "\n{eos_token}").
EOS_PLACEHOLDER = "{eos_token}"


def resolved_end(assistant_end: str, tokenizer) -> str:
    """`assistant_end` with {eos_token} replaced by the tokenizer's end-of-sequence token."""
    if EOS_PLACEHOLDER not in assistant_end:
        return assistant_end
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise ChipadaptError(
            f"data.template.assistant_end: {assistant_end!r} ends a turn with {EOS_PLACEHOLDER}, "
            "but the tokenizer has no end-of-sequence token"
        )
    return assistant_end.replace(EOS_PLACEHOLDER, eos)


class StringTemplate:
    """A template from config: each role a format string around `{content}`. The assistant's
    `{content}` plus `assistant_end` is learned; the attribute line (SteerLM) sits in the masked
    assistant header, as in NeMo's SteerLM format.

    `assistant_end` must hold something a generator stops on, or a model trained in the template never
    learns to end its turn and writes until max_new_tokens: ChipNeMo's ends a turn with the tokenizer's
    end-of-sequence token ({eos_token}), the token every generation_config.json, chat.py and
    evaluate.py stop on. (NeMo ends it with the next turn's `<extra_id_1>`, plain text to these
    tokenizers, which a plain `model.generate` has no way to stop on.)"""

    def __init__(
        self,
        system: str,
        user: str,
        assistant_header: str,
        assistant_end: str,
        attribute_line: str,
        default_system: str,
        tokenizer=None,
    ):  # the tokenizer is not needed: same call as ModelChatTemplate
        self.system, self.user, self.assistant_header = system, user, assistant_header
        self.assistant_end = resolved_end(assistant_end, tokenizer)
        self.attribute_line, self.default_system = attribute_line, default_system

    def _pieces(self, messages: list[dict], attributes: str):
        system = first_system(messages, self.default_system)
        yield self.system.format(content=system), False
        for message in messages:
            if message["role"] == "system":
                continue
            if message["role"] == "user":
                yield self.user.format(content=message["content"]), False
            elif message["role"] == "assistant":
                yield (
                    self.assistant_header + (self.attribute_line.format(content=attributes) if attributes else ""),
                    False,
                )
                yield message["content"] + self.assistant_end, True
            else:
                raise ChipadaptError(f"unknown message role {message['role']!r} (system, user, assistant)")

    def render(self, messages: list[dict], attributes: str = "") -> Rendered:
        text, spans = "", []
        for piece, learned in self._pieces(messages, attributes):
            if learned:
                spans.append((len(text), len(text) + len(piece)))
            text += piece
        return Rendered(text, spans)

    def prompt(self, messages: list[dict], attributes: str = "") -> str:
        text = "".join(piece for piece, _ in self._pieces(messages, attributes))
        return text + self.assistant_header + (self.attribute_line.format(content=attributes) if attributes else "")

    def as_jinja(self) -> str:
        """The same format as a Hugging Face chat template (no attribute line), saved with a model
        fine-tuned in it: evaluate.py, chat.py and any `apply_chat_template` user then prompt the model
        the way it was trained, not in its base model's format."""

        def literal(text: str) -> str:  # a Jinja string expression (JSON escapes are Jinja escapes)
            return "{{ " + json.dumps(text) + " }}" if text else ""

        def around(fmt: str, what: str) -> str:
            before, _, after = fmt.partition("{content}")
            return literal(before) + "{{ " + what + " }}" + literal(after)

        later_before, _, later_after = LATER_SYSTEM.partition("{number}")  # as render() refuses it
        return (
            "{%- set ns = namespace(system=" + json.dumps(self.default_system) + ") -%}"
            "{%- if messages and messages[0]['role'] == 'system' -%}{%- set ns.system = messages[0]['content'] -%}"
            "{%- endif -%}" + around(self.system, "ns.system") + "{%- for m in messages -%}"
            "{%- if m['role'] == 'system' and not loop.first -%}"
            "{{ raise_exception(" + json.dumps(later_before) + " ~ loop.index ~ " + json.dumps(later_after) + ") }}"
            "{%- elif m['role'] == 'user' -%}" + around(self.user, "m['content']") + ""
            "{%- elif m['role'] == 'assistant' -%}"
            + literal(self.assistant_header)
            + "{{ m['content'] }}"
            + literal(self.assistant_end)
            + "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}" + literal(self.assistant_header) + "{%- endif -%}"
        )


def tokenize_with_labels(tokenizer, rendered: Rendered, max_length: int | None) -> tuple[list[int], list[int]]:
    """Token ids and labels: a token is learned when it starts inside a learned span; others get -100.
    Cut to `max_length` tokens (None: whole)."""
    encoded = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = []
    span_iter = iter(sorted(rendered.spans))
    span = next(span_iter, None)
    for token, (start, _end) in zip(ids, offsets):
        while span is not None and start >= span[1]:
            span = next(span_iter, None)
        learned = span is not None and span[0] <= start < span[1]
        labels.append(token if learned else -100)
    return ids[:max_length], labels[:max_length]
