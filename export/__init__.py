"""Offline side of seqserve: corpora, PyTorch models, training and ONNX export.

Everything here may import torch; nothing under ``service/`` may import this package.
"""
