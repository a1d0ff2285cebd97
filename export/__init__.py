"""Export trained rlra_tf models to SavedModel, ONNX and TFLite (float32 and int8)."""
