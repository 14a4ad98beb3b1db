"""seqserve: serve recurrent and attention sequence models over gRPC on ONNX Runtime.

This package is the torch-free part shared by training, serving and clients:
the generated gRPC API (``seqserve.v1``), text handling, the model manifest
schema, the Python client and the ``seqserve`` command line.
"""

__version__ = "0.1.0"
