"""pytest_plugin: the scrfd-ref pytest plugin, registered through the ``pytest11`` entry
point (``scrfd_ref.pytest_plugin.options``): options and markers (``options``), session
hooks, the plan and the report lifecycle (``session``), data and device fixtures
(``fixtures_data``, ``fixtures``) and pytest-html extras (``html_extras``). May import every
layer up to ``report``; only the suite and the CLI sit above it."""
