"""The data fixtures of the scrfd-ref pytest plugin (:mod:`scrfd_ref.pytest_plugin.options`).

``data_root``, ``need``, ``shared_model``, ``sample_images``, ``wider_images_dir``,
``ground_truth``, ``variant_file`` skip when a file is missing, or fail under
``--require-data``; ``peer`` (the insightface package) and ``openvino_extra`` (the optional
OpenVINO extra) skip with the install line when absent, or fail under ``--require-data``
(the extra: in the acceptance tier only, the tier CI installs it for).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.pytest_plugin.session import SHARED_EVENTS, SHARED_MODEL_FILES

__all__ = ["data_root", "need", "shared_model", "sample_images", "wider_images_dir",
           "ground_truth", "variant_file", "peer", "openvino_extra"]


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


#: the shared model files the default tier covers: a static, named, 9-output export and a
#: dynamic, numbered, 6-output one (the other three run in the acceptance tier)
DEFAULT_TIER_MODELS = ("scrfd_500m_bnkps.onnx", "scrfd_1g.onnx")


@pytest.fixture(scope="session", params=[
    pytest.param(name, marks=() if name in DEFAULT_TIER_MODELS else pytest.mark.acceptance)
    for name in SHARED_MODEL_FILES])
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


@pytest.fixture(scope="session")
def wider_images_dir(data_root: Path, need) -> Path:
    """``WIDER_val/images`` of the data directory."""
    return need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")


@pytest.fixture(scope="session")
def ground_truth(data_root: Path, need):
    """The official WIDER FACE val ground truth (.mat files)."""
    from scrfd_ref.formats.ground_truth import load_ground_truth

    return load_ground_truth(need(data_root / "widerface" / "ground_truth", "WIDER ground truth"))


@pytest.fixture(scope="session")
def variant_file(data_root, pytestconfig):
    """``variant_file(name)``: the ONNX file of a variant in the data folder. A missing one
    fails under --require-data and skips otherwise (the conformance matrix leaves out the
    variants whose absence is allowed before it gets here)."""
    from scrfd_ref.device.model_identity import compute_problem, variant_problem

    checked: set[Path] = set()

    def find(variant: str) -> Path:
        model = data_mod.find_model(variant, data_root)
        if model is None:
            reason = data_mod.missing_model_reason(variant, data_root)
            if pytestconfig.getoption("--require-data"):
                pytest.fail(f"--require-data: {reason}", pytrace=False)
            pytest.skip(reason)
        if model not in checked:   # weights under another variant's name judge nothing
            problem = variant_problem(model, variant) or compute_problem(model, variant)
            if problem:
                pytest.fail(problem, pytrace=False)
            checked.add(model)
        return model
    return find


@pytest.fixture(scope="session")
def peer(pytestconfig):
    """``insightface.model_zoo.scrfd``, the peer implementation (in the test extra): its
    absence fails under --require-data (CI) and skips otherwise."""
    try:
        import insightface.model_zoo.scrfd as scrfd
    except ImportError as exc:
        reason = f"the peer package insightface is not installed ({exc}); pip install -e '.[test]'"
        if pytestconfig.getoption("--require-data"):
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)
    return scrfd


@pytest.fixture
def openvino_extra(request: pytest.FixtureRequest, pytestconfig: pytest.Config):
    """The ``openvino`` module (the optional extra, with nncf). Without it the test skips
    with the install line; an acceptance-tier test under --require-data fails instead (CI
    installs the extra for that tier; the default tier never needs it)."""
    try:
        import nncf  # noqa: F401
        import openvino
    except ImportError as exc:
        reason = f"the OpenVINO extra is not installed ({exc}): pip install -e '.[openvino]'"
        if (pytestconfig.getoption("--require-data")
                and request.node.get_closest_marker("acceptance") is not None):
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)
    return openvino


def openvino_left_out(dtype: str, require_data: bool) -> str | None:
    """Why an OpenVINO device of ``dtype`` cannot be built here (None: it can). A dtype this
    CPU lacks (native bf16) is an allowed case; a missing OpenVINO extra is one only outside
    --require-data (CI installs it for the acceptance tier): there the test fails."""
    from scrfd_ref.conformance.runs import dtype_unavailable
    from scrfd_ref.core.errors import BackendUnavailable

    try:
        import scrfd_ref.backends.openvino as ov

        ov.core()
    except BackendUnavailable as exc:
        if require_data:
            pytest.fail(f"--require-data: the OpenVINO devices need the extra: {exc}",
                        pytrace=False)
        return str(exc)
    return dtype_unavailable("openvino", dtype)
