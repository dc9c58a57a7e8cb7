"""perf: vamp-style throughput and latency runs: settings, instances, the pipelined
executor, the process / thread runner (:mod:`scrfd_ref.perf.runner`), statistics, results
and summaries. May import ``core``, ``formats``, ``backends``, ``detector``, ``widerface``,
``device`` and ``quantize`` (the model of a dtype); never conformance or anything above it.
"""
from scrfd_ref.perf.inputs import default_image_paths, pipeline_images
from scrfd_ref.perf.result import PerfResult, format_summary, library_versions
from scrfd_ref.perf.runner import compare_with_bare, model_for_dtype, run_bare, run_perf
from scrfd_ref.perf.settings import DEFAULT_ITERATIONS, DEFAULT_WARMUP, PerfError, PerfSettings
from scrfd_ref.perf.statistics import (
                                       PERCENTILE_METHOD,
                                       PERCENTILES,
                                       WINDOW_DEFINITION,
                                       latency_stats,
                                       throughput,
)

__all__ = [
    "DEFAULT_ITERATIONS",
    "DEFAULT_WARMUP",
    "PERCENTILES",
    "PERCENTILE_METHOD",
    "WINDOW_DEFINITION",
    "PerfError",
    "PerfResult",
    "PerfSettings",
    "compare_with_bare",
    "default_image_paths",
    "format_summary",
    "latency_stats",
    "library_versions",
    "model_for_dtype",
    "pipeline_images",
    "run_bare",
    "run_perf",
    "throughput",
]
