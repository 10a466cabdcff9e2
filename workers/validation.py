"""Pydantic validation errors as field-level messages: what the API's 422 and the CLI print.

Each error becomes ``{field, value, message, allowed?}``: the dotted spec field
(``params.coefficient.high``), the rejected value, a message and the allowed range,
stated once.
"""

from __future__ import annotations

import math
import re

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_NAMED = re.compile(r"^([A-Za-z_][\w.]*)=(\S+) ")


def _field(loc) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    tags = _family_tags()
    # the discriminator tag of the spec union: at the top (one spec) or after a list index (a batch)
    parts = [p for i, p in enumerate(parts) if not (p in tags and (i == 0 or parts[i - 1].isdigit()))]
    return ".".join(p for p in parts if not p.startswith("function-"))


def _json_safe(value):
    """The echoed input as JSON: non-finite floats (``1e999``, ``NaN``) and other types as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def validation_details(errors) -> list[dict]:
    """Each error as {field, value, message, allowed?}, naming the parameter and its range."""
    out = []
    for err in errors:
        ctx = err.get("ctx") or {}
        msg = err["msg"].removeprefix("Value error, ")
        loc = err.get("loc", ())
        field, value = _field(loc), err.get("input")
        allowed = " and ".join(f"{op} {ctx[k]}" for k, op in _BOUNDS.items() if k in ctx)
        named = _NAMED.match(msg)
        if named:  # a cross-field rule names its parameter: "k_max=500.0 is out of range; allowed: ..."
            name = named.group(1)
            field = name if not field or name.startswith(field + ".") else f"{field}.{name}"
            value = named.group(2).rstrip(";,")
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):  # unknown or missing family
            tag = str(ctx.get("discriminator", "family")).strip("'")
            field = f"{field}.{tag}" if field else tag
            value = ctx.get("tag")
            allowed = f"one of {ctx.get('expected_tags') or ', '.join(map(repr, _family_tags()))}"
            msg = f"unknown {tag} {value!r}" if value is not None else f"missing {tag}"
        elif err.get("type") == "json_invalid":  # loc is ("body", character offset)
            field, value = "body", None
            msg = f"{msg}: {ctx.get('error', 'invalid JSON')} (at character {loc[-1] if loc else 0})"
        item = {"field": field or "body", "value": _json_safe(value), "message": msg}
        if "expected" in ctx:
            allowed = f"one of {ctx['expected']}"
        elif "allowed:" in msg:
            allowed = msg.split("allowed:", 1)[1].strip()
            item["message"] = msg.split("; allowed:", 1)[0]  # the range is said once, in "allowed"
        if allowed:
            item["allowed"] = allowed
        out.append(item)
    return out


def _family_tags() -> tuple[str, ...]:
    from pdeforge.solvers.families import FAMILIES

    return tuple(FAMILIES)


