"""An MLServer runtime for the exported sentiment ONNX models (bench/peer.py serves one with it).

Runs inside MLServer's own virtual environment, so it imports nothing from seqserve:
it takes the model's own ``tokens`` / ``lengths`` INT64 tensors (the Open Inference
Protocol request seqserve also accepts) and answers ``logits`` FP32. ONNX Runtime
with one intra-op and one inter-op thread, as seqserve runs it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxSentiment(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, opts, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i).astype(np.int64) for i in payload.inputs}
        (logits,) = self._session.run(["logits"], {"tokens": feeds["tokens"], "lengths": feeds["lengths"]})
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("logits", logits)])
