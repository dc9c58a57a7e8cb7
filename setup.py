"""Build the Cython kernels (every ``scrfd_ref/**/*.pyx``).

The package works without them (each kernel has a pure-numpy twin that gives the
same result); they are built by ``pip install -e .`` or
``python setup.py build_ext --inplace``.
"""
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so float32 arithmetic in the kernels
# rounds exactly like the numpy reference paths (bit-exact NMS / AP).
COMPILE_ARGS = ["-O3", "-ffp-contract=off", "-fno-fast-math"]

extensions = [
    Extension(
        ".".join(path.with_suffix("").parts),
        [str(path)],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(Path("scrfd_ref").rglob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, language_level=3, quiet=True))
