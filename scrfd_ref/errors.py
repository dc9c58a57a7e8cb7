"""Exceptions raised by scrfd-ref.

Every error a user can cause with bad input derives from :class:`ScrfdRefError`, so the
CLI can print one clean line instead of a traceback. Messages name the file (or the
array) and say what was wrong.
"""
from __future__ import annotations


class ScrfdRefError(Exception):
    """Base class of every error scrfd-ref raises on bad input or missing data."""


class InputError(ScrfdRefError, ValueError):
    """A file or array given to scrfd-ref is malformed (wrong shape, corrupt, unreadable)."""


class LayoutError(InputError):
    """Model outputs do not fit any SCRFD layout (wrong count, shapes or values)."""


class DataMissingError(ScrfdRefError, FileNotFoundError):
    """A data file (model weights, ground truth, images) is not where it was looked for."""


class BackendUnavailable(ScrfdRefError):
    """A backend (or a backend x dtype combination) cannot run here: missing library,
    provider or GPU. The message is a one-line reason suitable for a pytest skip."""
