"""Part-of-speech tagging (issue 3): data with token features, taggers, training and ONNX export."""
