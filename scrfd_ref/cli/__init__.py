"""cli: the ``scrfd-ref`` command line: argument parsing only, one module per command group
over the shared argument helpers of ``args``; every command calls the package. May import
every layer."""
from scrfd_ref.cli.app import build_parser, main  # noqa: F401
from scrfd_ref.cli.args import make_detector, resolve_model  # noqa: F401
