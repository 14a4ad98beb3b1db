"""Generated gRPC code for the seqserve.v1 API: do not edit, run tools/gen_protos.py."""
