"""ONNX Runtime: execution provider choice and session creation.

This is the only module that imports onnxruntime; tasks ask it for sessions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from service.settings import Settings

log = logging.getLogger(__name__)

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _cuda_session(path: Path, opts: ort.SessionOptions) -> ort.InferenceSession | None:
    """A CUDA session for ``path`` if CUDA really comes up, else None.

    onnxruntime-gpu always lists CUDAExecutionProvider; on a machine without
    the CUDA libraries or a GPU, creating a session logs a screen of errors and
    falls back to the CPU. So try once with ORT's logger silenced and look at
    what the session actually got.
    """
    if CUDA not in ort.get_available_providers():
        return None
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(str(path), opts, providers=[CUDA, CPU])
    except Exception:  # a CUDA that fails to start means: use the CPU
        return None
    finally:
        ort.set_default_logger_severity(2)
    return session if CUDA in session.get_providers() else None


class Runtime:
    """Creates ORT sessions with the configured threads, optimizations and provider."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._providers: list[str] | None = None

    @property
    def providers(self) -> list[str] | None:
        """The providers in use, once the first model has been loaded."""
        return self._providers

    def session_options(self) -> ort.SessionOptions:
        s = self._settings
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = s.ort_intra_op_threads
        opts.inter_op_num_threads = s.ort_inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = _OPT_LEVELS[s.ort_graph_optimization]
        opts.enable_cpu_mem_arena = s.ort_memory_arena
        spin = "1" if s.ort_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        opts.log_severity_level = 3
        return opts

    def session(self, path: Path) -> ort.InferenceSession:
        """Load one model file; raises with the file's name if ORT refuses it."""
        try:
            if self._providers is None:
                return self._first_session(path)
            return ort.InferenceSession(str(path), self.session_options(), providers=self._providers)
        except Exception as exc:
            raise RuntimeError(f"{path}: ONNX Runtime could not load the model: {exc}") from exc

    def _first_session(self, path: Path) -> ort.InferenceSession:
        """Choose the provider on the first model, and say once which it is."""
        wanted = self._settings.execution_provider
        session = None if wanted == "cpu" else _cuda_session(path, self.session_options())
        if session is not None:
            why = "a usable CUDA GPU was found"
        elif wanted == "cuda":
            raise RuntimeError("SEQSERVE_EXECUTION_PROVIDER=cuda but no usable CUDA GPU was found")
        else:
            why = "as configured" if wanted == "cpu" else "no usable CUDA GPU"
            session = ort.InferenceSession(str(path), self.session_options(), providers=[CPU])
        self._providers = session.get_providers()
        log.info("execution provider: %s (%s; onnxruntime %s)", self._providers[0], why, ort.__version__)
        return session
