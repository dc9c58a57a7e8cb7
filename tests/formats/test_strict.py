"""The one strict reader (:mod:`scrfd_ref.formats.strict`): every structured file refuses
non-regular files before opening them, duplicate keys, number syntax no producer writes
and absurd nesting, the same way in every command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scrfd_ref.conformance.gates import Gates
from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.strict import (
    StrictFormatError,
    json_loads,
    regular_file_text,
    strict_yaml_loader,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "gates.toml"
    os.mkfifo(fifo)
    with pytest.raises(StrictFormatError, match="not a regular file"):
        regular_file_text(fifo)       # opening it would block forever
    with pytest.raises(InputError, match="not a regular file"):
        Gates.load(fifo)


def test_the_pytest_plugin_refuses_a_fifo_as_gates_at_once(tmp_path):
    """The issue's case: ``--gates`` naming a FIFO blocked the session forever."""
    fifo = tmp_path / "g.toml"
    os.mkfifo(fifo)
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "--gates", str(fifo),
                          "conformance/test_heads.py"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 4 and "not a regular file" in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize("text, message", [
    ('{"Mean": [1, 2, 3], "Mean": [4, 5, 6]}', "duplicate key 'Mean'"),
    ('{"a": {"b": 1, "b": 2}}', "duplicate key 'b'"),
    ('{"x": NaN}', "NaN is not JSON"),
    ('{"x": -Infinity}', "-Infinity is not JSON"),
    ("[" * 40 + "]" * 40, "nested too deeply"),
    ('{"x": ', "not valid JSON"),
])
def test_json_a_producer_never_writes_is_refused(text, message):
    with pytest.raises(StrictFormatError, match=message):
        json_loads(text)


def test_valid_json_reads_as_json():
    assert json_loads('{"a": [1, 2.5, -0.0, 1e-7], "b": {"c": null}}') == {
        "a": [1, 2.5, -0.0, 1e-7], "b": {"c": None}}


def test_yaml_duplicate_keys_are_refused_at_any_depth():
    loader = strict_yaml_loader(yaml.SafeLoader)
    assert yaml.load("a: 1\nb: {c: 2}\n", Loader=loader) == {"a": 1, "b": {"c": 2}}  # noqa: S506
    for text in ("a: 1\na: 2\n", "b:\n  c: 1\n  c: 2\n"):
        with pytest.raises(StrictFormatError, match="duplicate key"):
            yaml.load(text, Loader=loader)  # noqa: S506


def test_text_that_is_not_utf8_is_refused(tmp_path):
    f = tmp_path / "v.json"
    f.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(StrictFormatError, match="not UTF-8"):
        regular_file_text(f)


def test_a_detections_json_with_an_impossible_image_size_is_refused(tmp_path):
    """Issue 33's campaign: ``read_detections_json`` accepted an image of width -5."""
    import json

    import pytest

    from scrfd_ref.core.errors import InputError
    from scrfd_ref.formats.detections_json import read_detections_json

    doc = {"model": "m", "profile": {}, "images": [
        {"path": "a.jpg", "width": -5, "height": 10, "detections": []}]}
    (tmp_path / "d.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"images\[0\]\.width must be a whole number of pixels "
                                         r">= 1, got -5"):
        read_detections_json(tmp_path / "d.json")
