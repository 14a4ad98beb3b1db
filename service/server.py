"""Builds and runs the gRPC server: ``python -m service`` or ``seqserve serve``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import ValidationError

from seqserve.kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from seqserve.v1 import (
    models_pb2,
    models_pb2_grpc,
    sentiment_pb2,
    sentiment_pb2_grpc,
    tagging_pb2,
    tagging_pb2_grpc,
    translation_pb2,
    translation_pb2_grpc,
)
from service import heap, repository
from service.affinity import front_end_cpus, pin_process
from service.grpc_api.interceptors import ConcurrencyInterceptor, ErrorInterceptor, MetricsInterceptor
from service.grpc_api.security import AuthInterceptor, load_tokens, server_credentials
from service.grpc_api.servicers import InferenceServicer, ModelsServicer, SentimentServicer
from service.grpc_api.tagging_servicer import TaggingServicer
from service.grpc_api.translation_servicer import TranslationServicer
from service.metrics import Metrics
from service.runtime import Runtime
from service.settings import Settings
from service.supervisor import supervise
from service.tasks.base import ModelStore, ServedModel, ServingState
from service.tasks.open_inference import OpenInference, SentimentTensors
from service.tasks.sentiment import SentimentModel, SentimentTask
from service.tasks.tagging import TaggingModel, TaggingTask
from service.tasks.translation import TranslationModel, TranslationTask

log = logging.getLogger("seqserve")

# A request takes its model from the store and hands it work in the same event-loop
# turn; this much grace covers any that had not yet when its version was retired.
_RETIRE_SETTLE_S = 1.0
# In a stop, once no request has been in a handler for this long, the calls gRPC still
# holds are not work: health watches, and calls it took in at the instant it stopped
# and never handed to a handler (grpcio 1.85: 3 stops in 510 of a bare aio server with
# 12 clients calling nonstop left one, whose client waited for its deadline). They are
# cancelled then, not at the end of the grace period (the same harness: 11 stops in 500
# cancelled one, and no client waited for its deadline).
# Long enough for an answer a handler already returned to reach its client.
_IDLE_BEFORE_CANCEL_S = 0.5
# Calls that wait on the server, not work in progress.
_NOT_WORK = {"health"}

SERVICE_NAMES = {
    "sentiment": sentiment_pb2.DESCRIPTOR.services_by_name["Sentiment"].full_name,
    "tagging": tagging_pb2.DESCRIPTOR.services_by_name["Tagging"].full_name,
    "translation": translation_pb2.DESCRIPTOR.services_by_name["Translation"].full_name,
}
MODELS_SERVICE = models_pb2.DESCRIPTOR.services_by_name["Models"].full_name
KSERVE_SERVICE = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


@dataclass
class App:
    """Everything a running server holds, so tests and ``main`` can stop it cleanly."""

    settings: Settings
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    store: ModelStore
    state: ServingState
    metrics: Metrics
    executor: ThreadPoolExecutor
    port: int
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)

    async def load_models(self) -> None:
        """Load the repository off the event loop, then tell health what serves."""
        await self.reload()
        if not self.state.serving:
            log.error("no model could be loaded from %s; health stays NOT_SERVING", self.settings.model_repository)

    async def reload(self) -> None:
        """Serve what the repository holds now: new versions load, removed ones retire once
        no request uses them. On SIGHUP and every ``RELOAD_INTERVAL_S``."""
        async with self._reload_lock:
            entries = await asyncio.to_thread(repository.scan, self.settings.model_repository, self.settings.tasks)
            plan = await asyncio.to_thread(self.store.plan, entries)
            self.store.apply(plan)
            if plan.added or plan.removed:
                heap.settle()
            for model in plan.removed:
                log.info("retiring %s/%s/%d (no longer in the repository)", model.entry.task, model.entry.arch,
                         model.entry.version)
                task = asyncio.create_task(self._retire(model))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            await self._publish_status()

    async def _retire(self, model: ServedModel) -> None:
        """Close a version gone from the store once the requests and streams holding it are done
        (at most GRACE_PERIOD_S later; what still uses it then fails with UNAVAILABLE)."""
        try:
            await asyncio.sleep(_RETIRE_SETTLE_S)
            deadline = time.monotonic() + self.settings.grace_period_s
            while model.busy and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:  # a shutdown cancels the wait: the version still closes
            await model.close()
            if self.state.accepting:
                heap.settle()

    async def _publish_status(self) -> None:
        """Health per task and the model_info series, from the store as it is now."""
        self.metrics.model_info.clear()
        for status in self.store.statuses():
            self.metrics.model_info.labels(
                status.entry.task, status.entry.arch, str(status.entry.version),
                str(status.ready).lower(), str(status.is_default).lower(),
            ).set(1)
        if not self.state.accepting:
            return  # shutting down: health stays NOT_SERVING
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        any_ready = False
        for task in self.settings.tasks:
            ready = any(s.ready for s in self.store.statuses(task))
            any_ready |= ready
            await self.health.set(SERVICE_NAMES[task], serving if ready else not_serving)
        await self.health.set(MODELS_SERVICE, serving)
        await self.health.set(KSERVE_SERVICE, serving if any_ready else not_serving)
        await self.health.set("", serving if any_ready else not_serving)
        self.state.serving = any_ready

    async def stop(self) -> None:
        """Health NOT_SERVING first, then no new RPCs, then let in-flight ones finish (for at
        most the grace period), then cancel what gRPC still holds."""
        self.state.serving = False
        self.state.accepting = False
        await self.health.enter_graceful_shutdown()
        if self.settings.drain_delay_s:
            await asyncio.sleep(self.settings.drain_delay_s)
        cancelled_before = self._cancelled_rpcs()
        stopping = asyncio.create_task(self.server.stop(self.settings.grace_period_s))
        if await self._idle_before(stopping):
            log.info("no request in flight: cancelling the calls gRPC still holds (health watches, calls "
                     "that arrived as it stopped)")
            await self.server.stop(None)
        await stopping
        cut_off = self._cancelled_rpcs() - cancelled_before
        if cut_off:
            log.warning("%d in-flight RPCs were cancelled when the grace period ended", cut_off)
        else:
            log.info("every in-flight RPC finished within the grace period")
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.store.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _idle_before(self, stopping: asyncio.Task[None]) -> bool:
        """Whether no request was in a handler for ``_IDLE_BEFORE_CANCEL_S`` before
        ``stopping`` ended or the grace period passed."""
        loop = asyncio.get_running_loop()
        end, idle_since = loop.time() + self.settings.grace_period_s, None
        while not stopping.done() and loop.time() < end:
            now = loop.time()
            if self._requests_in_flight():
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= _IDLE_BEFORE_CANCEL_S:
                return True
            await asyncio.wait([stopping], timeout=0.05)
        return False

    def _requests_in_flight(self) -> int:
        return int(sum(
            sample.value
            for metric in self.metrics.in_flight.collect()
            for sample in metric.samples
            if sample.labels.get("task") not in _NOT_WORK
        ))

    def _cancelled_rpcs(self) -> int:
        return int(sum(
            sample.value
            for metric in self.metrics.requests.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels.get("code") == "CANCELLED"
            and sample.labels.get("task") not in _NOT_WORK
        ))


async def build(settings: Settings, registry: CollectorRegistry, start: bool = True) -> App:
    """Create the server with health NOT_SERVING (and start it, unless ``start`` is false);
    call ``load_models`` next."""
    unknown = set(settings.tasks) - set(SERVICE_NAMES)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; this server serves {sorted(SERVICE_NAMES)}")
    # Files first: a missing certificate or token file stops the server before anything starts.
    credentials = server_credentials(settings)
    tokens = load_tokens(settings.auth_tokens_file) if settings.auth_tokens_file else []
    metrics = Metrics(registry)
    runtime = Runtime(settings)
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="ort")
    factories = {
        "sentiment": lambda entry: SentimentModel(entry, runtime, settings, metrics, executor),
        "tagging": lambda entry: TaggingModel(entry, runtime, settings, metrics, executor),
        "translation": lambda entry: TranslationModel(entry, runtime, settings, metrics),
    }
    store = ModelStore({task: factories[task] for task in settings.tasks}, settings.default_arch)
    state = ServingState()
    sentiment = SentimentTask(store, settings)
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
    ]
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(metrics)]
    if tokens:
        interceptors.append(AuthInterceptor(tokens))
    interceptors += [ErrorInterceptor(), ConcurrencyInterceptor(settings.max_concurrent_rpcs)]
    server = grpc.aio.server(
        interceptors=interceptors,
        options=options,
    )
    sentiment_pb2_grpc.add_SentimentServicer_to_server(SentimentServicer(sentiment), server)
    tagging_pb2_grpc.add_TaggingServicer_to_server(TaggingServicer(TaggingTask(store, settings, metrics)), server)
    translation_pb2_grpc.add_TranslationServicer_to_server(
        TranslationServicer(TranslationTask(store, settings)), server
    )
    models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(store), server)
    protocol = OpenInference(store, state, {"sentiment": SentimentTensors(sentiment)})
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(protocol), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES.values(), MODELS_SERVICE, KSERVE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.host}:{settings.grpc_port}"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC to {settings.host}:{settings.grpc_port}")
    if start:
        await server.start()
    return App(settings, server, health_servicer, store, state, metrics, executor, port)


async def serve(settings: Settings) -> None:
    if settings.decode_cpus:  # first, so that every thread the server starts inherits it
        pin_process(front_end_cpus(settings.decode_cpus))
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    # Processes sharing a port open it only once their models are loaded: the kernel
    # would hand connections to a process that cannot answer them yet.
    app = await build(settings, registry, start=not settings.reuse_port)
    security = ("mutual TLS" if settings.tls_client_ca_file else "TLS") if settings.tls_cert_file else "plaintext"
    if settings.auth_tokens_file:
        security += ", bearer tokens required (not for health)"
    log.info("gRPC on %s:%d, %s (health NOT_SERVING while models load)", settings.host, app.port, security)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    reloads = asyncio.Event()  # SIGHUP's default would end the process: take it over first
    loop.add_signal_handler(signal.SIGHUP, reloads.set)
    await app.load_models()
    if settings.reuse_port:
        await app.server.start()
    log.info("ready: %s", ", ".join(f"{s.entry.task}/{s.entry.arch}/{s.entry.version}"
                                   for s in app.store.statuses() if s.ready) or "no models")
    reloader = asyncio.create_task(_reload_on(reloads, app, settings.reload_interval_s))
    await stopping.wait()
    reloader.cancel()
    log.info("shutting down: health NOT_SERVING, %.1fs grace for in-flight requests", settings.grace_period_s)
    await app.stop()
    log.info("stopped")


async def _reload_on(signalled: asyncio.Event, app: App, interval: float) -> None:
    """Reload the repository on SIGHUP, and every ``interval`` seconds if it is not 0."""
    while True:
        try:
            await asyncio.wait_for(signalled.wait(), interval or None)
        except TimeoutError:
            pass
        signalled.clear()
        try:
            await app.reload()
        except Exception:  # a repository that cannot be read now may be readable next time
            log.exception("reloading the model repository failed; still serving what was loaded")


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.exit(f"seqserve: invalid settings: {exc}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.processes > 1:
        sys.exit(supervise(settings))
    try:
        asyncio.run(serve(settings))
    except (ValueError, OSError) as exc:  # a setting or file the server cannot start with
        log.error("cannot start: %s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
