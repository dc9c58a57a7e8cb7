"""The fast WIDER txt formatter writes exactly what CPython's ``repr`` writes.

The oracle is the plain ``("%r %r %r %r %r\\n" * n) % values`` format the files were always
written with; ``format_rows`` must give the same bytes for every finite float64, on both
sides of the plain / exponent boundaries (1e-4 and 1e16), for float32-valued doubles (what
the detector produces) and for arbitrary bit patterns.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scrfd_ref.formats.wider_txt import format_predictions, format_rows


def repr_rows(a: np.ndarray) -> bytes:
    """The oracle: every value through ``repr``, five to a line."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 5)
    return (("%r %r %r %r %r\n" * len(a)) % tuple(a.ravel().tolist())).encode("ascii")


EDGES = [0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 0.00010000000000000002, 1e-05,
         5e-324, 2.2250738585072014e-308, 1e16, -1e16, 9999999999999998.0, 1e15,
         123456789012345.6, 0.1, 0.30000000000000004, 1.7976931348623157e308, 345.0,
         0.8127, 1.0, -1.0, 0.5, 2.0 ** 53, 2.0 ** 53 + 2]


@pytest.mark.parametrize("value", EDGES)
def test_edge_values_equal_repr(value):
    a = np.array([[value, 1.5, 2.0, 3.0, 0.5], [7.25, value, -value, 0.02, value]])
    assert format_rows(a) == repr_rows(a)
    assert format_rows(a[:1]) == repr_rows(a[:1])


finite = st.floats(allow_nan=False, allow_infinity=False)
near_boundaries = st.sampled_from([1e-4, 1e16]).flatmap(
    lambda b: st.floats(b / 4, b * 4)).flatmap(lambda v: st.sampled_from([v, -v]))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(0, 40), st.just(5)),
                  elements=st.one_of(finite, near_boundaries)))
def test_any_finite_rows_equal_repr(rows):
    assert format_rows(rows) == repr_rows(rows)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 60), st.just(5)),
                  elements=st.floats(-200.0, 8000.0, width=32)))
def test_float32_valued_rows_equal_repr(rows):
    a = rows.astype(np.float64)       # detector output: float32 values written as float64
    assert format_rows(a) == repr_rows(a)


def test_random_bit_patterns_equal_repr():
    rng = np.random.default_rng(20261128)
    bits = rng.integers(0, 2 ** 64, size=200_000, dtype=np.uint64)
    a = bits.view(np.float64)
    a = a[np.isfinite(a)]
    plain = a[(np.abs(a) >= 1e-4) & (np.abs(a) < 1e16)]
    rows = plain[: len(plain) // 5 * 5].reshape(-1, 5)  # the fast path
    assert len(rows) > 500
    assert format_rows(rows) == repr_rows(rows)
    mixed = a[:5000].reshape(-1, 5)    # mostly rows with an exponent value: the fallback
    assert format_rows(mixed) == repr_rows(mixed)


def test_file_text_is_header_then_repr_rows():
    dets = np.array([[1e-5, 2, 3, 4, 0.1], [5, 6, 7, 8, 0.9], [9.5, 9, 9, 9, 0.1]])
    text = format_predictions("1--E", "x.jpg", dets)
    assert text == "1--E/x\n3\n" + repr_rows(dets[[1, 0, 2]]).decode()
    assert format_predictions("1--E", "x", np.zeros((0, 5))) == "1--E/x\n0\n"
