"""Declarative, validated parameters for frozen spec dataclasses.

A spec field is declared with :func:`param`, which records its default, allowed
range or choices and a one-line description in the dataclass field metadata.
:func:`validate` (called from ``__post_init__``) checks every field and raises
``ValueError`` naming the parameter, the offending value and the allowed range.
The same metadata lets the service layer build its request schema (OpenAPI
ranges, descriptions) without restating anything.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def param(
    default: Any,
    *,
    doc: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """A dataclass field with a default, bounds or choices and a description."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def allowed_range(meta: dict) -> str:
    """Human-readable allowed range, e.g. ``'1 <= n <= 1024'`` or ``"one of 'a', 'b'"``."""
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo = f"{meta['ge']:g} <= " if meta.get("ge") is not None else (
        f"{meta['gt']:g} < " if meta.get("gt") is not None else "")
    hi = f" <= {meta['le']:g}" if meta.get("le") is not None else (
        f" < {meta['lt']:g}" if meta.get("lt") is not None else "")
    return f"{lo}value{hi}" if (lo or hi) else "any value"


def check_value(name: str, value: Any, meta: dict) -> None:
    """Raise ``ValueError`` if ``value`` violates the bounds/choices in ``meta``."""
    if value is None:
        return
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            raise ValueError(f"{name}={value!r} is not allowed; allowed: {allowed_range(meta)}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    bad = not math.isfinite(value)
    bad |= meta.get("ge") is not None and value < meta["ge"]
    bad |= meta.get("gt") is not None and value <= meta["gt"]
    bad |= meta.get("le") is not None and value > meta["le"]
    bad |= meta.get("lt") is not None and value >= meta["lt"]
    if bad:
        rng = allowed_range(meta).replace("value", name.rsplit(".", 1)[-1])
        raise ValueError(f"{name}={value!r} is out of range; allowed: {rng}")


def validate(obj: Any, prefix: str = "") -> None:
    """Check every :func:`param` field of dataclass ``obj`` (nested specs validate themselves)."""
    for f in dataclasses.fields(obj):
        if "doc" in f.metadata:
            check_value(prefix + f.name, getattr(obj, f.name), f.metadata)


def fail(name: str, value: Any, allowed: str) -> None:
    """Raise the house ``ValueError`` for a cross-field constraint."""
    raise ValueError(f"{name}={value!r} is out of range; allowed: {allowed}")
