"""Build the Cython kernels (every ``scrfd_ref/**/*.pyx``) and ship the project's data.

The package works without the kernels (each has a pure-numpy twin that gives the same
result); they are built by ``pip install -e .`` or ``python setup.py build_ext --inplace``.

The checkout's ``data/`` folder (``gates.toml``, ``expected/``) stays the one source copy;
``build_py`` copies it into the built package as ``scrfd_ref/_data/`` so a wheel carries
it (``scrfd_ref.formats.datadir.project_file`` finds either).
"""
import shutil
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildWithData(build_py):
    """``build_py`` that also copies ``data/`` to ``<build>/scrfd_ref/_data``."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "scrfd_ref" / "_data"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(__file__).resolve().parent / "data", target)

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

setup(ext_modules=cythonize(extensions, language_level=3, quiet=True),
      cmdclass={"build_py": BuildWithData})
