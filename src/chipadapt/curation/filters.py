"""Per-document checks: size and line limits, tool-generated detection, secret and e-mail redaction."""

import re
import zlib
from dataclasses import dataclass

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# Credentials that must never reach a training corpus; each a recognisable published format, or
# an assignment of a long opaque value to a key/secret/password/token name.
SECRETS = {
    "private_key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    "aws_access_key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "slack_token": re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}\b"),
    # A name that ends in a credential word, with any prefix (`DB_PASSWORD`, `AWS_SECRET_ACCESS_KEY`,
    # `os.environ["OPENAI_API_KEY"]`: `_` is a word character, so a `\b` before the word let them all
    # through), assigned with `=` or `:` (Python, shell `export`, YAML, JSON).
    "assigned_secret": re.compile(
        r"(?i)((?<![A-Za-z0-9])[A-Za-z0-9_.\-]*?"
        r"(?:api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|passw(?:or)?d|passphrase|token|"
        r"credentials?)[\"']?\]?\s*[:=]\s*)([\"']?)([A-Za-z0-9/+_\-.]{12,})\2"
    ),
    # Tcl assigns with `set NAME VALUE`, the common form in EDA scripts.
    "assigned_secret_tcl": re.compile(
        r"(?i)(\bset\s+\w*(?:api[_-]?key|secret|passw(?:or)?d|token)\w*\s+)([\"']?)([A-Za-z0-9/+_\-.]{12,})\2"
    ),
}


# Names that also name code (`eos_token = tokenizer.unk_token_id`, `credentials = load_credentials`).
_CODE_LIKE_NAMES = re.compile(r"(?i)(token|credentials?)[\"']?\]?\s*[:=]\s*$")


def _assigned(match: re.Match) -> str:
    """The assignment with its value replaced. After a token or credentials name, an unquoted value with no
    digit is kept: it reads as code, where an opaque token holds digits. A password, passphrase, secret or
    key is replaced whatever it holds (`password=correcthorsebattery`)."""
    quote, value = match.group(2), match.group(3)
    if not quote and not any(c.isdigit() for c in value) and _CODE_LIKE_NAMES.search(match.group(1)):
        return match.group(0)
    return f"{match.group(1)}{quote}<secret>{quote}"


def redact(text: str) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    text, n = EMAIL.subn("<email>", text)
    if n:
        counts["email"] = n
    for name, pattern in SECRETS.items():
        if name.startswith("assigned_secret"):
            kept = pattern.sub(_assigned, text)
            n = sum(1 for m in pattern.finditer(text) if _assigned(m) != m.group(0))
            text = kept
        else:
            text, n = pattern.subn("<secret>", text)
        if n:
            counts[name] = n
    return text, counts


@dataclass(frozen=True)
class GeneratedRules:
    banners: tuple[str, ...]
    banner_lines: int  # look for banners in the first N lines
    max_mean_line_length: float
    max_line_length: int
    max_compression_ratio: float  # zlib ratio above this = repetitive (tables, encodings, dumps)
    netlist_instance_share: float  # share of lines that look like cell instances


_INSTANCE = re.compile(r"^\s*[A-Za-z_][\w$]*\s+[\\A-Za-z_][\w$\\\[\].]*\s*\(\s*\.")


def generated_reason(text: str, lang: str, rules: GeneratedRules) -> str | None:
    """Why a file looks tool-generated (a label for blends to weight), or None for hand-written."""
    lines = text.splitlines() or [""]
    head = "\n".join(lines[: rules.banner_lines]).lower()
    if any(banner in head for banner in rules.banners):
        return "banner"
    lengths = [len(line) for line in lines]
    if max(lengths) > rules.max_line_length:
        return "long_lines"
    if sum(lengths) / len(lines) > rules.max_mean_line_length:
        return "long_lines"
    if len(text) > 2000:
        sample = text[:200_000].encode()
        if len(sample) / len(zlib.compress(sample)) > rules.max_compression_ratio:
            return "repetitive"
    if lang in ("verilog", "systemverilog") and len(lines) > 50:
        instances = sum(1 for line in lines if _INSTANCE.match(line))
        if instances / len(lines) > rules.netlist_instance_share:
            return "netlist"
    return None
