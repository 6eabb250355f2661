"""Which API calls a Python script makes, read from its syntax tree (never executed)."""

import ast
import re
from collections import Counter

FENCED = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.S | re.I)


def extract_code(reply: str) -> str:
    blocks = FENCED.findall(reply)
    return max(blocks, key=len) if blocks else reply


def parses(code: str) -> bool:
    """Whether `code` is a Python script: it parses and has at least one statement. `ast.parse` takes
    an empty, blank or comment-only text as an empty module; counted as valid, a model that writes
    nothing would score full `syntax` (and `all_calls` against a reference that makes no call)."""
    try:
        return bool(ast.parse(code).body)
    except (SyntaxError, ValueError):
        return False


def _constant(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None  # a variable or expression: the argument is not compared


def api_calls(code: str) -> tuple[Counter, Counter]:
    """(call names, (call name, constant arguments)) as multisets; names are the called attribute or
    function (`findInst`, `get_db_block`), so `block.findInst` and `design.getBlock().findInst` agree."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return Counter(), Counter()
    names, with_args = Counter(), Counter()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name is None or name in {
            "print",
            "len",
            "range",
            "str",
            "int",
            "float",
            "list",
            "dict",
            "set",
            "tuple",
            "enumerate",
            "zip",
            "format",
        }:
            continue
        names[name] += 1
        args = tuple(repr(_constant(a)) for a in node.args)
        with_args[(name, args)] += 1
    return names, with_args


def f1(predicted: Counter, reference: Counter) -> tuple[float, float, float]:
    """Multiset precision, recall and F1."""
    overlap = sum((predicted & reference).values())
    p = overlap / sum(predicted.values()) if predicted else 0.0
    r = overlap / sum(reference.values()) if reference else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)
