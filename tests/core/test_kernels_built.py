"""The Cython kernels are built where they must be.

Both kernels (NMS, WIDER best-overlap search) have numpy twins that give the same result,
so the package works without them, and tests that compare a kernel with its twin record
a skip when it is not built. In CI (``CI=true``) or under ``--require-data`` a missing
kernel is a failure: the fast paths would silently not be tested.
"""
from __future__ import annotations

import os

import pytest

import scrfd_ref.core.nms as nms
import scrfd_ref.widerface.evaluate as ev


@pytest.mark.parametrize("name, built", [("scrfd_ref.core._nms_kernel", nms.HAVE_KERNEL),
                                         ("scrfd_ref.widerface._eval_kernel", ev.HAVE_KERNEL)])
def test_cython_kernel_is_built(name, built, pytestconfig):
    if built:
        return
    reason = f"{name} is not built (python setup.py build_ext --inplace)"
    if os.environ.get("CI", "").lower() == "true" or pytestconfig.getoption("--require-data"):
        pytest.fail(f"{reason}: the kernel-agreement tests would not run", pytrace=False)
    pytest.skip(reason)
