"""English -> Spanish translation: encoder-decoder models, training, ONNX export (encoder + decoder step)."""
