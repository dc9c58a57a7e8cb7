"""scrfd-ref: the trusted reference for SCRFD face detectors on accelerators."""
from __future__ import annotations

__version__ = "0.1.0"
