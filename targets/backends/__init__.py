"""amc.targets.backends: one module a backend (ExecuTorch, TFLite/LiteRT and TFLite Micro, ONNX), and the registry."""
