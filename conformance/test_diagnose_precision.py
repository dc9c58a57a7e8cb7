"""``scrfd-ref diagnose`` on honest devices: the precision hypothesis and the nonsense ones.

Honest dumps of ``500m_bnkps`` (device layout, device-flow profile, as the fault-injection
tests make them) on three 16-image subsets of WIDER val: 16 images spread over one event
each (Parade, Interview, Family_Group; never an int8 calibration image), not only the
first images the fault tests diagnose. The devices are the rows of :data:`DEVICES` (ONNX
Runtime fp32, fp16 and int8 with the default recipe, the emulated fp16- and bf16-storage
devices, and a third-party compiler's: OpenVINO fp32, native bf16 and NNCF int8). Every
dump is diagnosed as each dtype of :data:`~scrfd_ref.core.dtypes.DTYPES` in turn:

- at its true dtype nothing is named a cause and its noise level fits that dtype;
- claimed as a more precise dtype (more significand bits: fp32 > fp16 > bf16 > int8) its
  noise still fits its true dtype, and the precision hypothesis names the true dtype, e.g.
  "the device computes in bf16, not fp16": a cause where the claimed dtype's gates fail
  it (they mostly do: it is noisier than the claim), an observation where they do not;
- claimed as a less precise dtype it passes that dtype's gates and nothing is named;
- no correction or preprocessing hypothesis that could count (each is nonsense on an
  honest device) comes within 3 dB of the margin ``diagnose_min_gain_db``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.core.dtypes import DTYPES, dtype_spec, output_dtype
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.device.emulate import RUN_OPTIONS, emulated_model
from scrfd_ref.device.flow import dump, image2npz
from scrfd_ref.pytest_plugin.fixtures_data import openvino_left_out
from scrfd_ref.quantize.prepare import prepare_model

pytestmark = pytest.mark.acceptance

VARIANT = "500m_bnkps"
#: subset -> its event (16 images spread over it)
SUBSETS = {"parade": "0--Parade", "interview": "13--Interview", "family": "20--Family_Group"}
COUNT = 16
#: how close to the margin a nonsense hypothesis may come (dB)
NONSENSE_SLACK = 3.0


def _ort(name: str):
    """An honest ONNX Runtime device: fp32, a conversion, or a storage emulation."""
    def build(model: Path, size) -> tuple[str, Path, dict]:
        fp32 = prepare_model(model, layout="device", input_size=size)
        if name == "fp32":
            return "ort", fp32, {}
        if name.endswith("-storage"):
            return "ort", emulated_model(fp32, name), dict(RUN_OPTIONS)
        return "ort", prepare_model(model, layout="device", dtype=name, input_size=size), {}
    return build


def _openvino(dtype: str):
    """A third-party compiler's build: OpenVINO at its precision hint (fp32, native bf16)
    or NNCF int8."""
    def build(model: Path, size) -> tuple[str, Path, dict]:
        return "openvino", prepare_model(model, layout="device", dtype=dtype, input_size=size,
                                         backend="openvino"), {}
    return build


#: honest device -> (its true dtype, its build: (model, input size) -> (backend, model
#: file, options))
DEVICES = {"ort-fp32": ("fp32", _ort("fp32")), "ort-fp16": ("fp16", _ort("fp16")),
           "ort-int8": ("int8", _ort("int8")),
           "fp16-storage": ("fp16", _ort("fp16-storage")),
           "bf16-storage": ("bf16", _ort("bf16-storage")),
           "openvino-fp32": ("fp32", _openvino("fp32")),
           "openvino-bf16": ("bf16", _openvino("bf16")),
           "openvino-int8": ("int8", _openvino("int8"))}


def _left_out(device: str, require_data: bool) -> str | None:
    """Why ``device`` cannot be built here (None: it can)."""
    if not device.startswith("openvino-"):
        return None
    return openvino_left_out(DEVICES[device][0], require_data)


def _bits(dtype: str) -> int:
    """Significand bits, int8 (a per-tensor scale) below every float."""
    return dtype_spec(dtype).significand_bits or 0


def _subset_items(images_dir: Path, event: str):
    from scrfd_ref.formats.datadir import project_file
    from scrfd_ref.formats.dataset import list_images

    calib = {ln.strip() for ln in project_file("calibration_images.txt").read_text()
             .splitlines() if ln.strip() and not ln.startswith("#")}
    items = [it for it in list_images(images_dir, [event])
             if f"{it.event}/{it.name}" not in calib]
    return [items[(i * len(items)) // COUNT] for i in range(COUNT)]


@pytest.fixture(scope="module")
def dumps(tmp_path_factory, pytestconfig, variant_file, wider_images_dir):
    """``{subset: {device: dump folder}}``, the model and the profile."""
    if pytestconfig.getoption("--device-outputs"):
        pytest.skip("these tests make their own dumps, not a replay of --device-outputs")
    model = variant_file(VARIANT)
    profile = get_profile("device-flow")
    root = tmp_path_factory.mktemp("precision")
    left_out = {d: why for d in DEVICES
                if (why := _left_out(d, pytestconfig.getoption("--require-data")))}
    out: dict[str, dict[str, Path]] = {}
    for subset, event in SUBSETS.items():
        images = root / subset / "images"
        for it in _subset_items(wider_images_dir, event):
            (images / it.event).mkdir(parents=True, exist_ok=True)
            (images / it.event / it.path.name).symlink_to(it.path)
        datalist = root / subset / "datalist.txt"
        image2npz(images, root / subset / "npz", datalist, progress=False)
        for name, (dtype, build) in DEVICES.items():
            if name in left_out:
                continue
            backend, path, opts = build(model, profile.input_size)
            with get_backend(backend, path, dtype=dtype, **opts) as b:
                dump(b, datalist, root / subset / name, profile, progress=False,
                     dtype=output_dtype(dtype), meta={"variant": VARIANT, "dtype": dtype})
            out.setdefault(subset, {})[name] = root / subset / name
    return {"dumps": out, "model": model, "profile": profile, "images": wider_images_dir,
            "left_out": left_out}


@pytest.fixture(scope="module")
def diagnosed(dumps, gates):
    """``{(subset, device, claimed dtype): Diagnosis}``, the reference side run once per
    subset."""
    from scrfd_ref.diagnose.run import ReferenceSet, diagnose_outputs

    out = {"left_out": dumps["left_out"]}
    for subset, by_device in dumps["dumps"].items():
        refs = ReferenceSet(dumps["model"], dumps["profile"])
        for name, folder in by_device.items():
            for claimed in DTYPES:
                out[(subset, name, claimed)] = diagnose_outputs(
                    folder, dumps["model"], dumps["images"], dumps["profile"], gates,
                    claimed, count=COUNT, references=refs)[0]
    return out


def _cases(relation):
    return [(s, d, c) for s in SUBSETS for d, (true, _) in DEVICES.items() for c in DTYPES
            if relation(_bits(c), _bits(true))]


def _said(result) -> str:
    return "\n".join(result.lines())


def _result(diagnosed, subset: str, device: str, claimed: str):
    """The diagnosis of ``device``'s dump claimed as ``claimed`` (a skip, with the reason,
    for a device this machine cannot build)."""
    if device in diagnosed["left_out"]:
        pytest.skip(f"{device} not built here: {diagnosed['left_out'][device]}")
    return diagnosed[(subset, device, claimed)]


@pytest.mark.parametrize(("subset", "device"), [(s, d) for s in SUBSETS for d in DEVICES])
def test_an_honest_device_at_its_dtype_gets_no_cause(diagnosed, subset, device):
    true = DEVICES[device][0]
    result = _result(diagnosed, subset, device, true)
    assert not result.causes, _said(result)
    assert result.precision is not None and result.precision.fits(true), _said(result)


@pytest.mark.parametrize(("subset", "device", "claimed"), _cases(lambda c, t: c > t))
def test_a_device_claimed_more_precise_is_named_by_its_arithmetic(diagnosed, subset, device,
                                                                  claimed):
    true = DEVICES[device][0]
    result = _result(diagnosed, subset, device, claimed)
    assert result.precision is not None and result.precision.best == true, _said(result)
    # noisier than the claim, it usually fails the claimed gates and the arithmetic is the
    # cause; a good int8 recipe may meet bf16's gates on 16 images (NNCF on 20--Family_Group:
    # 8.8 dB under honest bf16), and then the arithmetic is an observation
    named = [c for c in (result.causes if result.failed else result.observations)
             if c.name == "precision"]
    assert [c.text for c in named] == [f"the device computes in {true}, not {claimed}"], \
        _said(result)


@pytest.mark.parametrize(("subset", "device", "claimed"), _cases(lambda c, t: c < t))
def test_a_device_claimed_less_precise_passes(diagnosed, subset, device, claimed):
    result = _result(diagnosed, subset, device, claimed)
    assert not result.failed and not result.causes, _said(result)


@pytest.mark.parametrize(("subset", "device"), [(s, d) for s in SUBSETS for d in DEVICES])
def test_no_nonsense_hypothesis_comes_near_the_margin(diagnosed, subset, device):
    """Every correction and preprocessing hypothesis is nonsense on an honest device: none
    that could count (a fit on enough anchors) gains within 3 dB of the margin."""
    result = _result(diagnosed, subset, device, DEVICES[device][0])
    near = [c for c in result.ranked
            if c.counts(result.min_gain_db - NONSENSE_SLACK, result.min_anchors)]
    assert not near, "\n".join(c.describe(result.min_anchors) for c in near)
