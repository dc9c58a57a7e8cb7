"""Thin module: the test lives in the package (scrfd_ref.conformance.suite), one copy."""
from scrfd_ref.conformance.suite.test_slices import *  # noqa: F401,F403
