"""The checkout's pytest configuration.

Options, markers, hooks and fixtures come from the scrfd-ref plugin
(``scrfd_ref.pytest_plugin.options``, registered by the package's ``pytest11`` entry point);
this file only makes the test helpers of ``tests/helpers/`` (the WIDER oracle, the insightface
WIDER-test transcription, the CLI workspace) importable by every suite, and loads the
plugin when the package is used without being installed.
"""
import sys
from importlib.metadata import entry_points
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests" / "helpers"))

if not any(ep.value == "scrfd_ref.pytest_plugin.options" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["scrfd_ref.pytest_plugin.options"]
