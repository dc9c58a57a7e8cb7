"""Compliance and comparison through the real runner on a small input (the dynamic
500m_bnkps model at 64x64): ``perf --compliance`` and ``perf --compare`` end to end, the
timed sample really comes from the timed threads, and the deterministic faults of the
library (a head skipped when timed, another head at batch N, a wrongly padded last batch)
are caught by the check made for them through ``run_perf``. The cache fault, whose check
is a timing, is in ``conformance/test_perf_compliance_faults.py`` (timing tier)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import scrfd_ref.cli.app as cli_mod
from scrfd_ref.conformance.perf_compliance import check_timed_run
from scrfd_ref.conformance.perf_faults import BatchHeadBackend, PaddingBackend, SkipHeadBackend
from scrfd_ref.perf import PerfSettings, run_perf

pytestmark = pytest.mark.data
DYNAMIC = "scrfd_500m_bnkps_dynamic.onnx"
SMALL = (3, 64, 64)


@pytest.fixture(scope="module")
def model(data_root, need) -> Path:
    return need(data_root / "models" / DYNAMIC, "model file")


def _run(model, data_root, wrap=None, batch=1):
    s = PerfSettings(model=str(model), shape=SMALL, batch=batch, iterations=8, warmup=1,
                     threads=1, keep_outputs=4, wrap=wrap, data_dir=str(data_root),
                     max_images=8)
    r = run_perf(s)
    return r, {c.name: c for c in check_timed_run(s, r, repeat_calls=4)}


def test_an_honest_run_keeps_its_sample_and_passes(model, data_root):
    r, checks = _run(model, data_root, batch=2)
    assert len(r.kept) == 4 and all(k in range(8) for k, _ in r.kept)
    assert checks["sampled_outputs"].passed and "bit for bit" in checks["sampled_outputs"].detail
    assert checks["batch_invariance"].passed, checks["batch_invariance"].detail
    assert [c["check"] for c in r.compliance] == ["sampled_outputs", "batch_invariance",
                                                  "repeated_input"]
    assert r.to_dict()["kept_outputs"] == 4


@pytest.mark.parametrize("wrap, batch, check, says", [
    (SkipHeadBackend, 1, "sampled_outputs", "elements differ (bit-exact expected)"),
    (functools.partial(BatchHeadBackend, batch=4), 1, "batch_invariance", "in a batch of 4"),
    (functools.partial(PaddingBackend, batch=4), 4, "batch_invariance",
     "the last, partial batch of 3"),
])
def test_each_deterministic_fault_fails_its_check(model, data_root, wrap, batch, check, says):
    r, checks = _run(model, data_root, wrap=wrap, batch=batch)
    assert not checks[check].passed and says in checks[check].detail
    assert r.settings["wrap"]  # the wrapper is named in the result


def test_cli_compliance_and_compare(model, data_root, tmp_path, capsys):
    base = ["--data-dir", str(data_root), "perf", "-m", str(model), "-s", "3,64,64",
            "-n", "6", "-w", "1", "--threads", "1"]
    out = tmp_path / "c.json"
    assert cli_mod.main([*base, "--compliance", "-b", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [c["passed"] for c in doc["compliance"]] == [True, True, True]
    assert "compliance  : ok sampled_outputs" in capsys.readouterr().out
    out = tmp_path / "v.json"
    # the same model on both sides, a 50% threshold: a pass unless the machine stalls
    rc = cli_mod.main([*base, "--compare", str(model), "--threshold", "50", "--rounds", "6",
                       "--json", str(out)])
    doc = json.loads(out.read_text())
    c = doc["comparison"]
    assert rc == 0 and c["verdict"]["verdict"] == "pass" and len(c["baseline"]) == 7
    assert c["looks"] == [6] and doc["baseline"]["model"] == doc["candidate"]["model"]
    assert "verdict     : PASS" in capsys.readouterr().out
