"""Taking a model away: ONNX export, int8 quantization, and prediction with onnxruntime alone (no torch)."""
