"""All server settings, read once from the environment (prefix ``SEQSERVE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Task = Literal["sentiment", "tagging", "translation"]
DecodeBatching = Literal["continuous", "request", "static"]


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``SEQSERVE_<FIELD NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="SEQSERVE_", extra="ignore", use_attribute_docstrings=True
    )

    host: str = "0.0.0.0"
    """Address the gRPC server binds to."""
    grpc_port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free port (the chosen port is logged)."""
    metrics_port: int = Field(8000, ge=0, le=65535)
    """Port of the Prometheus ``/metrics`` HTTP endpoint; 0 disables it."""
    model_repository: Path = Path("models")
    """Root of the model repository: ``<task>/<arch>/<version>/manifest.json``."""
    tasks: list[str] = ["sentiment", "tagging", "translation"]
    """Tasks whose models are loaded (JSON list in the environment)."""
    default_arch: dict[str, str] = {}
    """Default architecture per task, e.g. ``{"sentiment": "lstm"}``; a task not
    named here defaults to its loaded model with the best test accuracy (BLEU for
    translation)."""

    execution_provider: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when onnxruntime-gpu finds a usable GPU, else the CPU."""
    ort_intra_op_threads: int = Field(1, ge=0)
    """Threads ONNX Runtime uses inside one operator (0 lets ORT decide). One per
    session gave the best tail latency on small machines: requests run in parallel
    across sessions instead."""
    ort_inter_op_threads: int = Field(1, ge=0)
    """Threads ONNX Runtime uses across independent operators (0 lets ORT decide)."""
    ort_spinning: bool = False
    """Let ORT's thread pool spin while idle: lower latency, but burns a core."""
    ort_graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    """ONNX Runtime graph optimization level."""
    ort_memory_arena: bool = True
    """ONNX Runtime's CPU memory arena (reuses buffers between runs; off returns them)."""
    processes: int = Field(1, ge=1)
    """Server processes sharing the gRPC port (SO_REUSEPORT; the kernel spreads
    connections over them), each with its own models and event loop; process i serves
    its metrics on METRICS_PORT + i. Needs a fixed GRPC_PORT."""
    reuse_port: bool = False
    """Bind the gRPC port with SO_REUSEPORT (set for the processes of PROCESSES > 1)."""
    inference_threads: int = Field(2, ge=1)
    """Worker threads that run ORT sessions, so the event loop never blocks on a model."""

    max_batch_size: int = Field(32, ge=1)
    """Largest batch the dynamic batcher sends to one ORT run."""
    max_batch_wait_ms: float = Field(0.0, ge=0)
    """How long the batcher holds the first request of a batch waiting for more.
    0 sends whatever is queued at once: a lone request pays no wait, and under
    load batches still fill while the previous ORT run is busy."""
    batch_hold_ms: float = Field(4.0, ge=0)
    """Longest a busy model's batch waits for more requests while the event loop is still
    taking requests in (sentiment and whole-sentence tagging; not stream steps). The wait
    ends as soon as the loop idles, and a model is busy only when most of its recent
    requests arrived while others were unanswered, so one request at a time never waits.
    At 64 in flight it raised the mean batch from 1.3-1.7 to 7-11 (docs/performance.md).
    0 turns it off."""
    inline_single_runs: bool = True
    """A lone request that finds its model idle runs on the event loop's thread instead
    of an inference thread: two thread hand-offs less (p50 at concurrency 1 went from
    1.7 to 1.2 ms for a small sentiment model on a 2-core machine). Turn off for models
    whose single run takes long enough that holding the event loop for it matters."""
    max_queue: int = Field(1024, ge=1)
    """Requests waiting per model before new ones get RESOURCE_EXHAUSTED."""

    overload_budget_ms: float = Field(1000.0, ge=0)
    """Latency budget for admission: a model refuses a new request (RESOURCE_EXHAUSTED,
    at once) when the requests it already holds would take longer than this at its
    measured capacity. An idle model admits; until SEQSERVE_MAX_BATCH_SIZE requests
    (4 translations) have finished since it loaded, it admits that many at once and
    no more, since it has no estimate yet. 0 turns it off (then only SEQSERVE_MAX_QUEUE
    bounds the queue). Streams are admitted when they open (SEQSERVE_MAX_STREAMS), not
    per token. The default favours throughput; a budget near a model's unloaded p50
    favours latency (docs/performance.md, overload)."""
    overload_budget_ms_by_task: dict[Task, Annotated[float, Field(ge=0)]] = {}
    """Per-task budgets that replace OVERLOAD_BUDGET_MS, as JSON. ``{"translation": 10}``
    (about a translation's unloaded p50) keeps admitted translations near their unloaded
    latency under overload, at 60-90% of the throughput a full queue gets, while
    sentiment keeps the default for full batches: under 10x overload, p99 within 2x the
    unloaded p99 in two runs of three alone, in 13 of 15 with DECODE_CPUS; since beam
    search got faster (10x is now a heavier load), in one of five with DECODE_CPUS
    (docs/performance.md, overload)."""

    max_text_chars: int = Field(2000, ge=1)
    """Longest text accepted, in characters (INVALID_ARGUMENT beyond)."""
    max_tokens: int = Field(256, ge=1)
    """Longest text accepted, in tokens (INVALID_ARGUMENT beyond)."""
    max_batch_texts: int = Field(64, ge=1)
    """Most texts in one batch request (INVALID_ARGUMENT beyond)."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest gRPC message received or sent."""
    max_concurrent_rpcs: int = Field(1000, ge=1)
    """RPCs handled at once; further ones are refused with RESOURCE_EXHAUSTED."""

    max_streams: int = Field(256, ge=1)
    """Tagging streams open at once; a new one beyond gets RESOURCE_EXHAUSTED."""
    max_stream_tokens: int = Field(10000, ge=1)
    """Tokens one tagging stream may send in its life (RESOURCE_EXHAUSTED beyond)."""
    stream_idle_timeout_s: float = Field(60.0, gt=0)
    """A tagging stream with no message for this long is ended and its state freed."""
    lookahead_window: int = Field(64, ge=1)
    """Tokens of left context a lookahead (bidirectional/attention) stream re-encodes
    with each new token: bounds the work per token in a long stream."""

    default_beam_size: int = Field(4, ge=1)
    """Translation beam width when a request leaves it at 0 (1 is greedy decoding)."""
    max_beam_size: int = Field(16, ge=1)
    """Widest beam a translation request may ask for (INVALID_ARGUMENT beyond)."""
    max_output_tokens: int = Field(512, ge=1)
    """Longest translation, in subword pieces: the cap on a request's max_length and
    on the default limit (1.5 x the source's pieces + 10)."""
    max_decode_rows: int = Field(256, ge=1)
    """Rows (one per beam hypothesis) one translation model decodes together; requests
    beyond wait in its queue (SEQSERVE_MAX_QUEUE, then RESOURCE_EXHAUSTED)."""
    decode_process: bool = True
    """Decode each translation model in a worker process of its own, so the decoder's
    Python work between ORT runs does not wait for the GIL behind the event loop
    (measured: docs/performance.md, overload). False decodes in a thread of the server."""
    decode_cpus: set[Annotated[int, Field(ge=0)]] = set()
    """CPUs the decode processes run on, as JSON (``[1]``); the rest of the server then
    keeps to the other CPUs it may use. Empty: no pinning. Keeps the event loop's work
    (refusing calls, under overload) from slowing decoding down: on a 2-core machine at
    10x overload, with ``[1]`` and a 10 ms translation budget, admitted translations'
    p99 stayed within 2x the unloaded p99 in 13 runs of 15 (median 1.23x), against
    1.4-3.4x unpinned; after beam search got faster, 10x is 806-1,057 arrivals/s and it
    held in one run of five (1.75-3.62x; docs/performance.md, overload). Costs
    sentiment and tagging those CPUs. Linux only; needs DECODE_PROCESS."""
    decode_batching: DecodeBatching = "continuous"
    """``continuous``: translations join and leave the running decode batch at every
    step. For comparison: ``request``: new translations join only an empty batch
    (finished ones still leave at once); ``static``: the batch runs as a whole until
    its longest member ends, finished members' rows included (a one-shot padded batch)."""

    tls_cert_file: Path | None = None
    """PEM certificate chain the server presents; with ``TLS_KEY_FILE`` the port
    speaks TLS only (plaintext when both are unset)."""
    tls_key_file: Path | None = None
    """PEM private key of ``TLS_CERT_FILE``."""
    tls_client_ca_file: Path | None = None
    """PEM CA certificates: when set, clients must present a certificate one of them
    signed (mutual TLS). Needs TLS on."""
    auth_tokens_file: Path | None = None
    """A file of bearer tokens, one per line: when set, every RPC except health needs
    metadata ``authorization: Bearer <token>`` (UNAUTHENTICATED otherwise). A file,
    not a variable, so the secret stays out of the environment and ``docker inspect``."""

    reload_interval_s: float = Field(0.0, ge=0)
    """How often the server looks for new or removed model versions in the repository
    (0: only on SIGHUP). New versions load beside the old ones; a removed version
    closes once the requests and streams using it have finished."""

    grace_period_s: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT, how long in-flight requests get to finish (the stop ends sooner
    once none is left)."""
    drain_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM/SIGINT, how long health says NOT_SERVING before the server stops
    taking new RPCs, so load balancers can route away first."""
    log_level: str = "INFO"
    """Python logging level name."""

    def budget_ms(self, task: str) -> float:
        """The admission budget of one task's models."""
        return self.overload_budget_ms_by_task.get(task, self.overload_budget_ms)  # type: ignore[call-overload]

    @model_validator(mode="after")
    def _settings_that_go_together(self) -> "Settings":
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("SEQSERVE_TLS_CERT_FILE and SEQSERVE_TLS_KEY_FILE go together: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("SEQSERVE_TLS_CLIENT_CA_FILE (mutual TLS) needs TLS: set SEQSERVE_TLS_CERT_FILE and _KEY_FILE")
        if self.decode_cpus and not self.decode_process:
            raise ValueError("SEQSERVE_DECODE_CPUS pins the decode processes: it needs SEQSERVE_DECODE_PROCESS=true")
        return self
