"""What every served model offers, and the store that finds one for a request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from service.admission import Admission
from service.batcher import Batcher
from service.errors import NotFound, Unavailable
from service.metrics import Metrics, ModelObserver
from service.repository import ModelEntry
from service.settings import Settings

log = logging.getLogger(__name__)

# What every model runs once at load (``warm_up``): any English words will do.
WARM_UP_TEXT = "In the beginning the model reads these words once before it serves"


def warm_up_text(settings: Settings) -> str:
    """The warm-up text within the request limits, so that no setting makes it a load error."""
    return " ".join(WARM_UP_TEXT.split()[: settings.max_tokens])[: settings.max_text_chars]


class ServedModel(Protocol):
    """One model version of one task: the small interface the store needs."""

    entry: ModelEntry

    def load(self) -> None:
        """Create ORT sessions and read vocabularies; raise with a clear message on failure."""

    @property
    def ready(self) -> bool: ...

    @property
    def busy(self) -> int:
        """Requests and streams using this version now (a retired version closes at 0)."""

    async def close(self) -> None:
        """Stop batchers; fail what is still queued."""


ModelFactory = Callable[[ModelEntry], ServedModel]


def model_batcher(
    run: Callable[[list[Any]], list[Any]], entry: ModelEntry, settings: Settings, metrics: Metrics, executor: Executor,
    admission: bool = True, hold: bool = True,
) -> Batcher[Any, Any]:
    """The dynamic batcher in front of one model version, sized by the settings; with
    ``admission``, requests past the latency budget are refused at once; with ``hold``,
    a busy model's batches wait for more while the event loop takes requests in."""
    return Batcher(
        run,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1000,
        max_queue=settings.max_queue,
        executor=executor,
        workers=settings.inference_threads,
        observer=ModelObserver(metrics, entry.task, entry.arch),
        name=f"{entry.task}/{entry.arch}/{entry.version}",
        admission=admission_for(settings, entry.task, settings.inference_threads) if admission else None,
        inline_single=settings.inline_single_runs,
        hold_s=settings.batch_hold_ms / 1000 if hold else 0.0,
    )


def admission_for(settings: Settings, task: str, parallel: int, floor: int = 0) -> Admission:
    return Admission(settings.budget_ms(task) / 1000, floor=floor or settings.max_batch_size, parallel=parallel)


def _quality(model: ServedModel) -> float:
    """What the default choice ranks by: test accuracy, or BLEU with beam for translation."""
    quality = model.entry.manifest.quality if model.entry.manifest else {}
    return float(quality.get("test_accuracy", quality.get("test_bleu_beam", 0.0)))


class ServingState:
    """Whether the server takes requests, as health says it: false while models
    load and from the start of a shutdown. Protocols with their own readiness
    calls (the Open Inference Protocol's ServerReady) read it here."""

    def __init__(self) -> None:
        self.serving = False
        self.accepting = True  # false from the start of a shutdown: reloads leave health alone


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    ready: bool
    is_default: bool
    error: str


@dataclass
class ReloadPlan:
    """The store's next contents, loaded off the event loop; ``ModelStore.apply`` swaps them in."""

    models: dict[tuple[str, str, int], ServedModel]
    errors: dict[tuple[str, str, int], tuple[ModelEntry, str]]
    defaults: dict[str, str]
    added: list[ModelEntry]
    removed: list[ServedModel]


class ModelStore:
    """All models of the repository, by task, architecture and version.

    ``plan`` loads what is new in a list of entries (in a worker thread) and
    ``apply`` swaps the whole table at once on the event loop, so a request sees
    either the old table or the new one, never a mix.
    """

    def __init__(self, factories: dict[str, ModelFactory], default_arch: dict[str, str]) -> None:
        self._factories = factories
        self._configured_defaults = default_arch
        self._models: dict[tuple[str, str, int], ServedModel] = {}
        self._errors: dict[tuple[str, str, int], tuple[ModelEntry, str]] = {}
        self._defaults: dict[str, str] = {}

    def load(self, entries: list[ModelEntry]) -> None:
        """Load every entry; a model that fails is reported, the others still serve."""
        self.apply(self.plan(entries))

    def plan(self, entries: list[ModelEntry]) -> ReloadPlan:
        """Load versions new on disk (or failed ones whose manifest changed); versions gone
        from disk are dropped. Blocking: call it in a worker thread."""
        on_disk = {(e.task, e.arch, e.version): e for e in entries}
        models = {key: m for key, m in self._models.items() if key in on_disk}
        removed = [m for key, m in self._models.items() if key not in on_disk]
        errors: dict[tuple[str, str, int], tuple[ModelEntry, str]] = {}
        added = []
        for key, entry in on_disk.items():
            if key in models:
                continue
            if key in self._errors and self._errors[key][0] == entry:  # unchanged: do not retry
                errors[key] = self._errors[key]
                continue
            model, error = self._load_one(entry)
            if model is None:
                errors[key] = (entry, error)
                log.error("not serving %s/%s/%d: %s", *key, error)
            else:
                models[key] = model
                added.append(entry)
                log.info("loaded %s/%s/%d from %s", *key, entry.path)
        defaults = {task: self._pick_default(task, models) for task in self._factories}
        return ReloadPlan(models, errors, defaults, added, removed)

    def _load_one(self, entry: ModelEntry) -> tuple[ServedModel | None, str]:
        if entry.manifest is None:
            return None, entry.error
        try:
            model = self._factories[entry.task](entry)
            model.load()
        except Exception as exc:  # one bad file must not take the server down
            return None, str(exc)
        return model, ""

    def apply(self, plan: ReloadPlan) -> None:
        """Swap in a plan's table (no await inside: requests see all of it or none)."""
        self._models, self._errors, self._defaults = plan.models, plan.errors, plan.defaults

    def _pick_default(self, task: str, models: dict[tuple[str, str, int], ServedModel]) -> str:
        archs = {arch for (t, arch, _) in models if t == task}
        configured = self._configured_defaults.get(task)
        if configured:
            if configured not in archs:
                log.warning("default %s arch %r has no ready model; choosing by accuracy", task, configured)
            else:
                return configured
        best = sorted((m for (t, _, _), m in models.items() if t == task), key=_quality)
        return best[-1].entry.arch if best else ""

    def get(self, task: str, arch: str = "", version: int = 0) -> ServedModel:
        """The model for a request: default arch when empty, newest version when 0."""
        if task not in self._factories:
            raise NotFound(f"task {task!r} is not served; served tasks: {', '.join(self._factories)}")
        arch = arch or self._defaults.get(task, "")
        versions = sorted(v for (t, a, v) in self._models if t == task and a == arch)
        if not versions:
            served = sorted({a for (t, a, _) in self._models if t == task})
            if not served:
                raise Unavailable(f"no {task} model is loaded")
            raise NotFound(f"no {task} model for architecture {arch!r}; available: {', '.join(served)}")
        if version == 0:
            version = versions[-1]
        if version not in versions:
            raise NotFound(
                f"{task}/{arch} has no version {version}; available: {', '.join(map(str, versions))}"
            )
        return self._models[(task, arch, version)]

    def default_arch(self, task: str) -> str:
        return self._defaults.get(task, "")

    @property
    def tasks(self) -> list[str]:
        """The tasks this store serves (whether or not any of their models loaded)."""
        return list(self._factories)

    def versions(self, task: str, arch: str) -> list[int]:
        """The loaded versions of one task and architecture, oldest first."""
        return sorted(v for (t, a, v) in self._models if t == task and a == arch)

    def statuses(self, task: str = "") -> list[ModelStatus]:
        rows = [
            ModelStatus(m.entry, m.ready, self._defaults.get(t) == a and v == self._newest(t, a), "")
            for (t, a, v), m in self._models.items()
        ] + [ModelStatus(entry, False, False, error) for entry, error in self._errors.values()]
        rows = [r for r in rows if not task or r.entry.task == task]
        return sorted(rows, key=lambda r: (r.entry.task, r.entry.arch, r.entry.version))

    def _newest(self, task: str, arch: str) -> int:
        return max(v for (t, a, v) in self._models if t == task and a == arch)

    @property
    def all_ready(self) -> bool:
        return bool(self._models) and all(m.ready for m in self._models.values())

    async def close(self) -> None:
        for model in self._models.values():
            await model.close()
