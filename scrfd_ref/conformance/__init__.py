"""conformance: the verdict engine: device runs against the fp32 reference and the
matrix plan (``runs``), comparators (``compare``, ``buckets``, ``detection_agreement``), the
gates declaration and file (``gates``), the three verdicts (``verdicts``), the checks per
level (``checks``), the AP decomposition, the fault library (``faults``) and the int8
recipe-vs-AP comparison (``int8_recipes``: recipes judged as devices). ``suite/`` holds the
conformance tests a device team runs (``pytest --pyargs scrfd_ref.conformance``). May import
every layer up to ``perf``; never diagnose, report, the pytest plugin or the CLI."""
