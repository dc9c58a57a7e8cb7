"""The stash keys the scrfd-ref pytest plugin's modules share (one place, no import
circles between the session hooks, the matrix and the fixtures)."""
from __future__ import annotations

import pytest

#: the session's :class:`~scrfd_ref.report.document.ConformanceReport`
REPORT_KEY = pytest.StashKey["object"]()
#: the :class:`~scrfd_ref.conformance.gates.Gates` of the session
GATES_KEY = pytest.StashKey[object]()
#: the ``--device-outputs`` folder's manifest (:func:`scrfd_ref.device.flow.dump_source`)
SOURCE_KEY = pytest.StashKey[object]()
#: the matrix plans (with and without the reference), made once
PLAN_KEY = pytest.StashKey[dict]()
#: the ``--vdsp-params`` file read
VDSP_KEY = pytest.StashKey[object]()
#: ``(build YAML, recipe)`` of ``--build-yaml``
RECIPE_KEY = pytest.StashKey[object]()
#: the perf rows of the session (vamp-style table)
PERF_KEY = pytest.StashKey[list]()
#: (device, level, messages) of every inconclusive level of the session
INCONCLUSIVE_KEY = pytest.StashKey[list]()
#: the session verdict, once computed
SESSION_VERDICT_KEY = pytest.StashKey[object]()
#: notices of the session's caches (a --ref-cache entry rebuilt, and why), shown in the summary
NOTICES_KEY = pytest.StashKey[list]()
