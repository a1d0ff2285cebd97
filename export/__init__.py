"""Export trained rlra_tf models to SavedModel and ONNX."""
