"""core: the numerical flow image -> blob -> heads -> candidates -> detections: profiles,
preprocess (letterbox, normalise, the inverse transform), anchors, head layout recognition,
decode, NMS (+ Cython kernel), postprocess, the detection type, errors, the dtype list and
the threading helpers. Arrays in, arrays out; imports nothing of the project outside ``core``."""
