"""Options, markers and shared fixtures of the scrfd-ref test suites.

Data files come from the data directory (``--data-dir`` or ``$SCRFD_DATA``); a test
that needs a missing file is skipped with the path in its reason, or fails when
``--require-data`` is given (CI runs that way, so missing data cannot pass silently).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from scrfd_ref import data as data_mod


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scrfd-ref")
    group.addoption("--data-dir", default=None,
                    help="data folder with models/, widerface/, images/ (default: $SCRFD_DATA, "
                         "then ../shared/data)")
    group.addoption("--require-data", action="store_true",
                    default=os.environ.get("SCRFD_REQUIRE_DATA") == "1",
                    help="fail, instead of skip, when a data file a test needs is missing (CI)")


@pytest.fixture(scope="session")
def data_root(pytestconfig: pytest.Config) -> Path:
    """The data directory the session reads models, images and WIDER FACE from."""
    return data_mod.data_dir(pytestconfig.getoption("--data-dir"))


@pytest.fixture(scope="session")
def need(pytestconfig: pytest.Config):
    """``need(path, what)`` returns ``path`` or skips (fails under --require-data)."""
    strict = pytestconfig.getoption("--require-data")

    def _need(path: Path, what: str = "data file") -> Path:
        if Path(path).exists():
            return Path(path)
        reason = f"{what} missing: {path} (set SCRFD_DATA or --data-dir)"
        if strict:
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)

    return _need


#: the real model files of the shared data folder (README of ../shared/data)
SHARED_MODEL_FILES = (
    "scrfd_500m_bnkps.onnx",
    "scrfd_500m_bnkps_dynamic.onnx",
    "scrfd_2.5g_bnkps_dynamic.onnx",
    "scrfd_1g.onnx",
    "scrfd_2.5g.onnx",
)
#: the five complete WIDER FACE val events in the shared data
SHARED_EVENTS = ("0--Parade", "13--Interview", "19--Couple", "20--Family_Group", "4--Dancing")


@pytest.fixture(scope="session", params=SHARED_MODEL_FILES)
def shared_model(request: pytest.FixtureRequest, data_root: Path, need) -> Path:
    """Each real SCRFD model file of the shared data (parametrized)."""
    return need(data_root / "models" / request.param, "model file")


@pytest.fixture(scope="session")
def sample_images(data_root: Path, need) -> list[Path]:
    """The two shared sample images plus the first 4 images of each shared WIDER event (22)."""
    images = [need(data_root / "images" / n, "sample image")
              for n in ("one_face_1280x720.jpg", "debug_input.jpg")]
    for event in SHARED_EVENTS:
        folder = need(data_root / "widerface" / "WIDER_val" / "images" / event, "WIDER event folder")
        images += sorted(folder.glob("*.jpg"))[:4]
    return images
