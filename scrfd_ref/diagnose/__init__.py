"""diagnose: why a device fails: head-level hypotheses fitted to raw heads (``heads``), the
arithmetic a device's noise fits (``precision``), diagnosis from WIDER prediction files
alone (``predictions``), the result types (``result``) and the dump-folder driver (``run``:
load -> reference set -> hypotheses -> judge -> result). May import every layer up to
``conformance``; never report, the pytest plugin or the CLI."""
