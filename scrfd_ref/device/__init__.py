"""device: model conversion (fp16 / int8), ONNX tools, derived models, the vendor
device flow (image2npz, dump, npz-decode) and device output folders."""
