"""device: what a device team's flow needs around a model: ONNX inspection and head finding
(``onnx_tools``), the device-layout export (``export``), model files and the derived-model
cache helpers (``model_files``), the vendor flow (image2npz, dump, npz-decode: ``flow``),
emulated honest devices (fp16 / bf16 storage: ``emulate``), the synthetic SCRFD-shaped model,
conversion summaries and the config linter. May import ``core``, ``formats``, ``backends``,
``detector`` and ``widerface``; never the dtype conversions (``quantize`` builds on this)."""
