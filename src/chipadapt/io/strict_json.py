"""JSON that every reader accepts: no `NaN`, `Infinity` or `-Infinity`.

Python's json module writes non-finite floats as those bare words by default; jq, JavaScript's
JSON.parse, pandas' strict readers and most JSON libraries in other languages refuse the whole file.
They arise honestly here: an exact paired interval over 5 items or fewer is unbounded, and a metric
over zero items is NaN. Each is written as `null` ("no finite value"), the convention lm-eval and
W&B summaries follow; the run's other fields (the item count, the test) say why."""

import json
import math
import numbers
from typing import Any


def finite_or_null(obj: Any) -> Any:
    """`obj` with every non-finite float, however deeply nested, replaced by None. Numpy and torch
    float scalars become Python floats (a `default=str` writer would quote them as strings)."""
    if isinstance(obj, numbers.Integral):
        return obj if isinstance(obj, int) else int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, dict):
        return {key: finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(value) for value in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps of `obj` with non-finite floats as null."""
    return json.dumps(finite_or_null(obj), allow_nan=False, **kwargs)
