"""Generated code of the Open Inference Protocol (KServe v2 gRPC, proto package
``inference``) from protos/seqserve/kserve/: ``python tools/gen_protos.py``."""
