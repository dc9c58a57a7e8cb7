"""quantize: the dtype conversions a device build goes through: fp16 / bf16 / int8 model
files and their cache (``convert``; the writers in ``write``), the int8 build with its
calibration images and recipes (``int8_build``, ``calibration``), per-node sensitivity and the
mixed-precision search, NNCF int8 for OpenVINO (``nncf_int8``), the conversion report and the
derived model of a backend x dtype (``prepare``). May import ``core``, ``formats``,
``backends``, ``detector``, ``widerface`` and ``device``; nothing that judges."""
