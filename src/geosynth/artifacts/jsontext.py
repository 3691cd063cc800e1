"""The one way geosynth turns data into JSON text: strict JSON, never ``NaN`` or ``Infinity``.

Python's ``json.dumps`` writes ``NaN`` for a float NaN by default, which is not JSON: ``jq``,
browsers and most JSON libraries refuse the file, and a number that should have stopped the run
slips into a report. :func:`json_text` refuses non-finite numbers instead, naming where in the
object they are; a value that may be undefined (a metric of an empty class) is written as
``null`` by the code that computes it.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, allow_nan=False, **kwargs)``; a NaN or infinite number raises
    ValueError naming its place (``['fid']['value'] is nan``)."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as exc:
        where = _non_finite(obj, "")
        if where is None:
            raise
        raise ValueError(f"not strict JSON: {where}") from exc


def _non_finite(obj: Any, path: str) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{path or 'the value'} is {obj}"
    if isinstance(obj, dict):
        items: Any = ((f"{path}[{k!r}]", v) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for sub, value in items:
        found = _non_finite(value, sub)
        if found is not None:
            return found
    return None
