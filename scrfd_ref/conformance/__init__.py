"""conformance: device runs against the fp32 reference, comparators, gates, checks,
reports, the AP decomposition, fault injection and the pytest plugin."""
