"""The scrfd-ref pytest plugin: options and markers here; hooks and fixtures registered
when the session is configured.

Installed with the package and registered through the ``pytest11`` entry point, so
``pytest --pyargs scrfd_ref.conformance --device-outputs DIR --data-dir DATA`` runs the
conformance suite from any folder; the checkout's ``conftest.py`` only adds its test
helpers. This module imports nothing of the package at load time: the session hooks
(:mod:`scrfd_ref.pytest_plugin.session`) and the fixtures
(:mod:`scrfd_ref.pytest_plugin.fixtures_data`, :mod:`scrfd_ref.pytest_plugin.fixtures`) are
registered in ``pytest_configure``, after
coverage measurement (``--cov``) has started, so their lines are measured too.

Data comes from the data directory (``--data-dir`` or ``$SCRFD_DATA``); a test that needs
a missing file is skipped with the path in its reason, or fails under ``--require-data``
(CI). Conformance tests take a ``device_spec`` fixture parametrized over
backend x dtype x variant (ids like ``ort-int8-500m_bnkps``) or one replay folder
(``--device-outputs``); each is compared with the fp32 ONNX Runtime reference of its
variant, computed once per session (or per xdist worker, or shared via ``--ref-cache``).
"""
from __future__ import annotations

import importlib
import os

import pytest

DEFAULT_BACKENDS = ("ort", "opencv", "gpu", "openvino")
MARKERS = (
    "data: needs files from the data directory (SCRFD_DATA); skipped when absent unless "
    "--require-data",
    "peer: runs the insightface package side by side as the peer implementation",
    "slow: takes more than a few seconds",
    "acceptance: the full tier (every backend x dtype x variant, dataset-wide runs, fault "
    "matrices, benchmark cycles): pytest -m acceptance; CI runs it too",
    "timing: its verdict depends on measured time: run it alone, never beside other tests "
    "(CI runs the acceptance tier with -n 2 -m 'not timing', then these serially)",
)




# ----------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("scrfd-ref")
    g.addoption("--data-dir", default=None,
                help="data folder with models/, widerface/, images/ (default: $SCRFD_DATA, "
                     "then ../shared/data)")
    g.addoption("--require-data", action="store_true",
                default=os.environ.get("SCRFD_REQUIRE_DATA") == "1",
                help="fail, instead of skip, when a data file a test needs is missing (CI; "
                     "also SCRFD_REQUIRE_DATA=1). Variants without weights still skip.")
    g.addoption("--backend", action="append", default=None, metavar="NAME",
                help=f"conformance: backend(s) to check, repeatable (default: "
                     f"{', '.join(DEFAULT_BACKENDS)} and installed plugins)")
    g.addoption("--dtype", action="append", default=None, metavar="DTYPE",
                help="conformance: fp32, fp16, bf16, int8, repeatable (default: all four)")
    g.addoption("--variant", action="append", default=None, metavar="VARIANT",
                help="conformance: SCRFD variant(s), repeatable (default: all eight; those "
                     "without weights skip)")
    g.addoption("--device-outputs", default=None, metavar="DIR",
                help="conformance: replay a folder of device output npz files (datalist.txt "
                     "in or beside it; scrfd_dump.json gives variant/dtype/profile if present)")
    g.addoption("--profile", default=None, metavar="NAME",
                help="conformance: profile of both runs (default widerface-eval; for "
                     "--device-outputs the dump's own)")
    g.addoption("--vdsp-params", default=None, metavar="FILE",
                help="conformance: the device's vdsp params JSON; sets the preprocessing of "
                     "the profile both runs use (device-flow unless --profile; thresholds "
                     "stay the profile's)")
    g.addoption("--build-yaml", default=None, metavar="FILE",
                help="conformance: the vamc build YAML; the int8 devices are calibrated with "
                     "its recipe (calibration mode, per channel, image count, resize / "
                     "normalise)")
    g.addoption("--gates", default=None, metavar="FILE",
                help="conformance: gates TOML file (default data/gates.toml; gates it leaves "
                     "out take the defaults, named once in the header)")
    g.addoption("--allow-incomplete", action="store_true",
                help="conformance: accept a --device-outputs folder whose scrfd_dump.json says "
                     "the dump did not finish")
    g.addoption("--force-profile", action="store_true",
                help="conformance: run --profile although the dump recorded another "
                     "preprocessing geometry")
    g.addoption("--force-dtype", action="store_true",
                help="conformance: judge a --device-outputs folder as --dtype although its "
                     "scrfd_dump.json records another dtype (without it the manifest wins and "
                     "a differing --dtype stops the session)")
    g.addoption("--accept-inconclusive", action="store_true",
                help="conformance: let a gate the images cannot decide (nothing to measure, "
                     "an AP interval straddling its limit) pass, for smoke runs on a few "
                     "images; each is still listed at the end as inconclusive, not as "
                     "evidence of conformance")
    g.addoption("--report", default=None, metavar="DIR",
                help="conformance: write report.html (open it in a browser), report.md, "
                     "report.json, PR curves and overlays here")
    g.addoption("--ref-cache", default=None, metavar="DIR",
                help="conformance: save/reuse fp32 reference runs here (share between xdist "
                     "workers or hosts)")
    g.addoption("--head-images", type=int, default=12, metavar="N",
                help="conformance: images whose raw heads are compared (default 12)")
    p = parser.getgroup("scrfd-ref perf (vamp-style benchmark runs)")
    p.addoption("--perf-instances", type=int, default=1, metavar="I",
                help="concurrent instances (threads, each with its own session), vamp -i")
    p.addoption("--perf-processes", type=int, default=1, metavar="P",
                help="processes, each running the instances, vamp -p")
    p.addoption("--perf-batch", type=int, action="append", default=None, metavar="B",
                help="images per call, vamp -b; repeatable (default: 1 and 8)")
    p.addoption("--perf-shape", default="3,640,640", metavar="C,H,W",
                help="shape of one input, vamp -s (default 3,640,640)")
    p.addoption("--perf-iterations", type=int, default=20, metavar="N",
                help="measured calls per instance (default 20; 2 with --benchmark-disable)")
    p.addoption("--perf-threads", type=int, default=None, metavar="T",
                help="ONNX Runtime intra-op threads per instance (default: ORT's choice)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, then the session hooks and the fixtures."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    for name in ("scrfd_ref.pytest_plugin.session", "scrfd_ref.pytest_plugin.matrix",
                 "scrfd_ref.pytest_plugin.fixtures_data", "scrfd_ref.pytest_plugin.fixtures"):
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.register(importlib.import_module(name), name)
    verdict = importlib.import_module("scrfd_ref.pytest_plugin.verdict")
    if not config.pluginmanager.has_plugin(verdict.PLUGIN_NAME):
        config.pluginmanager.register(verdict.SessionVerdictPlugin(config), verdict.PLUGIN_NAME)
    # pytest-html, when installed and active: verdicts and report.html in its page
    extras = "scrfd_ref.pytest_plugin.html_extras"
    if (config.pluginmanager.hasplugin("html")
            and hasattr(config.hook, "pytest_html_results_summary")
            and not config.pluginmanager.has_plugin(extras)):
        config.pluginmanager.register(importlib.import_module(extras), extras)
