"""The Export panel: ONNX export, the model's metadata, Try it and the report."""
