"""Local inference: features of window sets, ONNX engine and model slot, model registry and signatures, decisions, rescoring."""
