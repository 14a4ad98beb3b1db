"""Servicers: protobuf in, task call, protobuf out. No logic lives here."""

from __future__ import annotations

import grpc

from seqserve.kserve import grpc_predict_v2_pb2 as kserve_pb2
from seqserve.kserve import grpc_predict_v2_pb2_grpc as kserve_pb2_grpc
from seqserve.v1 import common_pb2, models_pb2, models_pb2_grpc, sentiment_pb2, sentiment_pb2_grpc
from service.grpc_api.interceptors import call_labels
from service.grpc_api.tensor_codec import decode_inputs, encode_response
from service.repository import ModelEntry
from service.tasks.base import ModelStore
from service.tasks.open_inference import OpenInference, TensorMetadata
from service.tasks.sentiment import Prediction, SentimentTask


def _model_id(entry: ModelEntry) -> common_pb2.ModelId:
    return common_pb2.ModelId(task=entry.task, arch=entry.arch, version=entry.version)


def _classification(p: Prediction) -> sentiment_pb2.Classification:
    return sentiment_pb2.Classification(
        label=p.label,
        probabilities=[sentiment_pb2.LabelProbability(label=l, probability=x) for l, x in p.probabilities],
    )


class SentimentServicer(sentiment_pb2_grpc.SentimentServicer):
    def __init__(self, task: SentimentTask) -> None:
        self._task = task

    async def Classify(
        self, request: sentiment_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> sentiment_pb2.ClassifyResponse:
        model = self._task.model(request.model.arch, request.model.version)
        call_labels().arch = model.entry.arch
        (prediction,) = await self._task.classify(model, [request.text])
        return sentiment_pb2.ClassifyResponse(result=_classification(prediction), model=_model_id(model.entry))

    async def ClassifyBatch(
        self, request: sentiment_pb2.ClassifyBatchRequest, context: grpc.aio.ServicerContext
    ) -> sentiment_pb2.ClassifyBatchResponse:
        model = self._task.model(request.model.arch, request.model.version)
        call_labels().arch = model.entry.arch
        predictions = await self._task.classify(model, list(request.texts))
        return sentiment_pb2.ClassifyBatchResponse(
            results=[_classification(p) for p in predictions], model=_model_id(model.entry)
        )


class ModelsServicer(models_pb2_grpc.ModelsServicer):
    def __init__(self, store: ModelStore) -> None:
        self._store = store

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.ListModelsResponse:
        infos = []
        for status in self._store.statuses(request.task):
            manifest = status.entry.manifest
            infos.append(
                models_pb2.ModelInfo(
                    id=_model_id(status.entry),
                    ready=status.ready,
                    is_default=status.is_default,
                    quality=dict(manifest.quality) if manifest else {},
                    parameters=manifest.parameters if manifest else 0,
                    labels=manifest.labels if manifest else [],
                    profile=str(manifest.training.get("profile", "")) if manifest else "",
                    error=status.error,
                )
            )
        return models_pb2.ListModelsResponse(models=infos)


def _tensor_metadata(t: TensorMetadata) -> kserve_pb2.ModelMetadataResponse.TensorMetadata:
    return kserve_pb2.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)


class InferenceServicer(kserve_pb2_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol (KServe v2), for Triton's and KServe's clients."""

    def __init__(self, protocol: OpenInference) -> None:
        self._protocol = protocol

    async def ServerLive(
        self, request: kserve_pb2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> kserve_pb2.ServerLiveResponse:
        return kserve_pb2.ServerLiveResponse(live=True)  # answering at all is being live

    async def ServerReady(
        self, request: kserve_pb2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> kserve_pb2.ServerReadyResponse:
        return kserve_pb2.ServerReadyResponse(ready=self._protocol.server_ready())

    async def ModelReady(
        self, request: kserve_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> kserve_pb2.ModelReadyResponse:
        return kserve_pb2.ModelReadyResponse(ready=self._protocol.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: kserve_pb2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> kserve_pb2.ServerMetadataResponse:
        name, version, extensions = self._protocol.server_metadata()
        return kserve_pb2.ServerMetadataResponse(name=name, version=version, extensions=extensions)

    async def ModelMetadata(
        self, request: kserve_pb2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> kserve_pb2.ModelMetadataResponse:
        meta = self._protocol.model_metadata(request.name, request.version)
        return kserve_pb2.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[_tensor_metadata(t) for t in meta.inputs],
            outputs=[_tensor_metadata(t) for t in meta.outputs],
        )

    async def ModelInfer(
        self, request: kserve_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> kserve_pb2.ModelInferResponse:
        model = self._protocol.model(request.model_name, request.model_version)
        labels = call_labels()
        # One protocol serves every task, so the task label comes from the model too.
        labels.task, labels.arch = model.entry.task, model.entry.arch
        result = await self._protocol.infer(model, decode_inputs(request), [o.name for o in request.outputs])
        return encode_response(result, request.id, raw=bool(request.raw_input_contents))
