"""Servicers: protobuf in, task call, protobuf out. No logic lives here."""

from __future__ import annotations

import grpc

from seqserve.v1 import common_pb2, models_pb2, models_pb2_grpc, sentiment_pb2, sentiment_pb2_grpc
from service.grpc_api.interceptors import call_labels
from service.repository import ModelEntry
from service.tasks.base import ModelStore
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
