"""The conformance suite a device team runs: ``pytest --pyargs scrfd_ref.conformance``
(or ``pytest conformance/`` in a checkout, whose thin modules import these)."""
