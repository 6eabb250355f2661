"""Whether a 40-character run of base64 that redaction_forms.AWS_SECRET found is an AWS secret access key:
judged by its randomness and by what is written near it (an AWS key id, the word `aws`)."""

import base64
import binascii
import math
import re

# An AWS key id or the word itself: the secret key is written next to its id, in a file about AWS.
_AWS_CONTEXT = re.compile(r"(?i)(?:AKIA|ASIA)[0-9A-Z]{16}|aws")
_AWS_WINDOW = 300  # characters either side searched for that context: a few lines of a credentials file


def _entropy(value: str) -> float:
    return -sum(value.count(c) / len(value) * math.log2(value.count(c) / len(value)) for c in set(value))


def _decodes_to_text(token: str) -> bool:
    """A base64 test vector encodes text (`TWFueSBoYW5kcy...`); a key's 30 bytes are random."""
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return False
    return sum(32 <= b < 127 or b in (9, 10, 13) for b in raw) >= 0.9 * len(raw)


def is_aws_secret(text: str, start: int, end: int) -> bool:
    """Whether the 40-character token at text[start:end] is an AWS secret key: random enough (a CamelCase
    identifier or a path has less entropy, a path more than three `/`) and, unless an AWS key id or the word
    `aws` is near, with a `/` or `+` in it as most keys have."""
    token = text[start:end]
    if token.startswith("/") or token.count("/") > 3 or _decodes_to_text(token):
        return False
    window = text[max(0, start - _AWS_WINDOW) : start] + " " + text[end : end + _AWS_WINDOW]
    if _AWS_CONTEXT.search(window) or _AWS_CONTEXT.search(token):
        return _entropy(token) >= 4.3
    return ("/" in token or "+" in token) and _entropy(token) >= 4.4


def is_named_aws_secret(token: str) -> bool:
    """Whether base64 written under a name that says AWS (`aws: ...`) is a key: both cases, a digit and
    random, not text encoded (a test vector)."""
    body = token.rstrip("=")
    mixed = any(c.isupper() for c in body) and any(c.islower() for c in body) and any(c.isdigit() for c in body)
    return mixed and not _decodes_to_text(token) and _entropy(body) >= 4.3
