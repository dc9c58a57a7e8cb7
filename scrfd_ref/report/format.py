"""How the report pages show values: numbers rounded to what their gate resolves, limits
and margins, verdicts combined per row / level / device, anchors, and the order of dtypes
and variants. Pure functions over the ``report.json`` document's values, shared by the page
view (:mod:`scrfd_ref.report.view`), the int8 pages and pytest-html's extras.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from scrfd_ref.conformance.gates import DECLARED
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.formats.datadir import VARIANTS
from scrfd_ref.report.inline import inline_picture

#: the check levels in the order of the flow (a report may add others; they follow)
LEVEL_ORDER = ("heads", "anchors", "detections", "buckets", "collapse", "ap", "slices")
#: verdicts, worst first; ``none``: nothing was judged
VERDICTS = ("fail", "inconclusive", "pass", "none")
_SEVERITY = {v: i for i, v in enumerate(VERDICTS)}
_SPEC = {g.name: g for g in DECLARED}

# ----------------------------------------------------------------------------- numbers


def _decimals(x: float) -> int:
    """Decimals of the shortest text of ``x`` (``0.9995`` -> 4, ``35.0`` -> 0)."""
    text = repr(float(x))
    if "e" in text:
        mant, exp = text.split("e")
        return max(0, len(mant.split(".")[1].rstrip("0")) if "." in mant else 0) - int(exp)
    frac = text.split(".")[1].rstrip("0") if "." in text else ""
    return len(frac)


def _sig(x: float, digits: int) -> str:
    """``x`` with ``digits`` significant digits; exponent only outside [1e-4, 1e6)."""
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        exp = math.floor(math.log10(abs(x)))
        decimals = max(0, digits - 1 - exp)
        return f"{x:.{decimals}f}"
    mant, exp = f"{x:.{digits - 1}e}".split("e")
    return f"{mant}e{int(exp)}"


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def format_number(value: Any, gate: str = "", limit: Any = None) -> str:
    """``value`` rounded to what gate ``gate`` resolves, as text.

    dB to 0.1; AP ratios and deltas to 4 decimals; shares that approach 1 (cosine,
    recall, IoU: a lower bound below 1) to one decimal more than their limit; whole
    numbers whole; everything else 3 significant digits. A value that would print like
    its limit although it differs gets more digits, so a failing row never reads as its
    limit. Non-numbers are shown as they are; ``None`` as a dash.
    """
    if value is None:
        return "\u2013"
    x = _number_or_none(value)
    if x is None:
        return str(value)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    lim = _number_or_none(limit)
    lim = lim if lim is not None and math.isfinite(lim) else None
    metric = re.sub(r"_(min|max)$", "", gate)
    spec = _SPEC.get(gate)

    def fixed(d: int) -> str:
        return f"{x:.{d}f}"

    if metric.endswith("_db"):
        text, more = fixed(1), lambda d: fixed(1 + d)
    elif "ratio" in metric or metric in ("abs_delta", "delta"):
        text, more = fixed(4), lambda d: fixed(4 + d)
    elif x.is_integer() and (lim is None or float(lim).is_integer()):
        return str(int(x))
    elif spec is not None and spec.kind == "min" and spec.hi == 1 and lim is not None:
        d = max(3, _decimals(lim) + 1)
        text, more = fixed(d), lambda k: fixed(d + k)
    else:
        text, more = _sig(x, 3), lambda k: _sig(x, 3 + k)
    if lim is not None and x != lim:
        k = 0
        while k < 8 and _number_or_none(text) == lim:
            k += 1
            text = more(k)
    return _unsigned_zero(text)


def _unsigned_zero(text: str) -> str:
    """``-0.0000`` -> ``0.0000``: a value that rounds to zero has no sign."""
    if text.startswith("-") and _number_or_none(text) == 0.0:
        return text[1:]
    return text


def format_limit(limit: Any) -> str:
    """A gate's limit as the gates file writes it (``0.9995``, ``35``, ``1e-05``)."""
    x = _number_or_none(limit)
    if x is None:
        return str(limit)
    return f"{x:g}"


def unit_of(gate: str) -> str:
    """The unit a gate's value is shown with (``dB``, ``px``, ``%``, or nothing)."""
    metric = re.sub(r"_(min|max)$", "", gate)
    if metric == "abs_delta":   # the AP gate reads a drop; the AP table's delta is its negative
        return "drop (reference − device)"
    return {"db": "dB", "px": "px", "pct": "%"}.get(metric.rsplit("_", 1)[-1], "")


def margin(value: Any, gate: str, limit: Any) -> dict[str, Any] | None:
    """How far a value is inside (positive) or outside (negative) its limit.

    ``{"fraction": f, "text": t}``: ``f`` in [-1, 1] is the margin in units of the gate's
    budget (10 dB for an SNR; the loss a lower bound below 1 allows, ``1 - limit``; the
    error an upper bound allows, ``limit``), for the bar; ``t`` the signed margin in the
    value's unit. ``None`` when the gate is no bound or the value is not a number.
    """
    x, lim = _number_or_none(value), _number_or_none(limit)
    if x is None or lim is None or not (math.isfinite(x) and math.isfinite(lim)):
        return None
    if gate.endswith("_min"):
        m = x - lim
    elif gate.endswith("_max"):
        m = lim - x
    else:
        return None
    unit = unit_of(gate)
    if unit == "dB":
        budget = 10.0
    elif gate.endswith("_min") and 0 < lim < 1:
        budget = 1.0 - lim
    elif gate.endswith("_max") and lim > 0:
        budget = lim
    else:
        budget = abs(lim) or 1.0
    fraction = max(-1.0, min(1.0, m / budget))
    if m == 0:
        return {"fraction": 0.0, "text": "at limit"}
    text = (f"{m:+.1f}" if unit == "dB" else ("+" if m >= 0 else "-") + _sig(abs(m), 2))
    return {"fraction": fraction, "text": f"{text} {unit}".rstrip()}


# ----------------------------------------------------------------------------- verdicts


def combine(verdicts: Iterable[str]) -> str:
    """The worst of ``verdicts`` (fail, inconclusive, pass); ``none`` when empty."""
    return min(verdicts, key=lambda v: _SEVERITY.get(v, 0), default="none")


def row_verdict(row: Mapping[str, Any]) -> str:
    """A gate row's verdict: its ``verdict``, else pass / fail from ``passed``."""
    v = row.get("verdict")
    if v in ("pass", "fail", "inconclusive"):
        return v
    return "pass" if row.get("passed") else "fail"


def level_verdict(level: Mapping[str, Any]) -> str:
    """A level's verdict: its ``verdict``, else the worst of its rows, else ``passed``."""
    v = level.get("verdict")
    if v in ("pass", "fail", "inconclusive"):
        return v
    rows = level.get("gates") or []
    if rows:
        return combine(row_verdict(r) for r in rows)
    return "pass" if level.get("passed") else "fail"


def device_verdict(record: Mapping[str, Any]) -> str:
    """A device's verdict: its ``verdict``, else the worst of its levels (``none``
    when nothing was judged)."""
    v = record.get("verdict")
    if v in ("pass", "fail", "inconclusive"):
        return v
    return combine(level_verdict(lv) for lv in (record.get("levels") or {}).values())


def device_anchor(device_id: str) -> str:
    """The HTML id of a device's section (stable: pytest-html links point at it)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", device_id)[:60]
    return f"dev-{slug}-{hashlib.sha1(device_id.encode()).hexdigest()[:6]}"


#: longer side (px) of the thumbnails of a passing device's pictures
THUMBNAIL_PX = 200
#: longer side (px) of a failing device's pictures on the page (the file keeps every pixel)
PAGE_PICTURE_PX = 900


def picture(folder: Path, kind: str, recorded: str, *, thumbnail: bool = False
            ) -> dict[str, Any]:
    """One picture of a device for the page (inlined, or missing with the reason); a
    ``thumbnail`` is a small inlined JPEG whose full-size file is linked (``href``)."""
    p = inline_picture(folder, recorded, thumbnail=THUMBNAIL_PX if thumbnail else None,
                       max_side=PAGE_PICTURE_PX)
    return {"kind": kind, "name": p.name, "uri": p.uri, "problem": p.problem,
            "href": p.name if thumbnail and p.uri else None}


def judged_set(devices: Mapping[str, Any]) -> tuple[list[int], list[str]]:
    """The images the devices were judged on (not the data folder's): the distinct image
    counts (sorted) and the events, from each device's ``spec``."""
    specs = [rec.get("spec") or {} for rec in devices.values() if isinstance(rec, Mapping)]
    counts = sorted({s["images"] for s in specs if isinstance(s.get("images"), int)})
    events = sorted({str(e) for s in specs for e in s.get("events") or []})
    return counts, events


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """``names`` in the order of ``order``, unknown ones after, sorted."""
    names = list(dict.fromkeys(names))
    known = [n for n in order if n in names]
    return known + sorted(n for n in names if n not in order)


def dtype_order(names: Iterable[str]) -> list[str]:
    """Dtypes in the declared order (:data:`scrfd_ref.core.dtypes.DTYPES`)."""
    return ordered(names, DTYPES)


def variant_order(names: Iterable[str]) -> list[str]:
    """Variants in the order of the variants table."""
    return ordered(names, tuple(VARIANTS))
