"""The seqserve gRPC server: ONNX Runtime only, never torch.

Layers, outermost first:
  grpc_api/   servicers that convert protobuf messages and nothing else, the
              interceptors (error mapping, RPC metrics), health and reflection;
  tasks/      what each task does with text, knowing nothing of gRPC;
  runtime.py  ONNX Runtime sessions and execution providers.
"""
