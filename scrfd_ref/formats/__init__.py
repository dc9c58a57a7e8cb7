"""formats: every file format the project reads or writes: images (with the pixel limit),
WIDER prediction txt, ground truth (.mat, txt; the types in ``ground_truth_types``), device
npz files and output folders, detections JSON, run manifests, the vdsp params JSON and the
build YAML, the data directory and variants table, annotated pictures, safe file writing.
May import ``core`` only: a format never runs a model and never judges."""
