"""Training and evaluation units as tasks on a Dask distributed cluster (``--scheduler``).

The local executors (a process pool in :func:`argos.training.driver.train_dataset` and
:func:`argos.evaluation.harness.evaluate`) stop at one machine. :class:`DaskExecutor` runs the same
unit functions as Dask tasks instead, on a scheduler given by address (``tcp://host:8786``) or on a
:class:`~distributed.LocalCluster` of worker processes started for the run (``local`` or
``local:N``). What runs in a task is exactly what a local worker process runs, so the results and
the exported artifacts are the same (verification and export stay in the driver, in unit order).

Failures:

- a task that raises is retried ``retries`` times (Dask ``retries=``);
- a task whose worker process dies (OOM kill, SIGKILL, a lost machine) is rescheduled by the
  scheduler on another worker (up to ``distributed.scheduler.allowed-failures`` deaths). A
  builtin training unit is a pure function of its inputs; an LLM unit resumes from its SQLite
  checkpoint in the shared run folder (completed calls are served from the response cache), and
  the driver exports rule sets by content, so a retry never loses or duplicates accepted rules.

LLM limits across workers: :class:`SharedLimitsChatModel` wraps a chat model so that every worker
of the cluster shares one concurrency limit (a Dask :class:`~distributed.Semaphore`) and one token
/ cost / call budget. The budget is the ledger of :mod:`argos.llm.usage`: a
:class:`~argos.llm.usage.LedgerState` checked by :meth:`~argos.llm.usage.Budget.check`, kept in
the scheduler's metadata store and read and updated under a Dask :class:`~distributed.Lock`. A
call first reserves its pessimistic cost (prompt estimate + full ``max_tokens``) in the ledger, so
concurrent calls on different workers can never overshoot the budget together; the reservation
is replaced by the real usage when the call returns.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from argos._types import default_workers
from argos.llm.interface import (
    BaseChatModel,
    CallOptions,
    ChatModel,
    Completion,
    Message,
    Usage,
    estimate_tokens,
)
from argos.llm.usage import Budget, LedgerState, Spend, call_cost

if TYPE_CHECKING:
    from argos.data.series import Dataset
    from argos.evaluation.harness import EvalTask, ProgressCallback, SeriesResult
    from argos.llm.config import LLMConfig
    from argos.llm.usage import Price
    from argos.training.generator import GeneratedUnit, Generator, TrainJob


class SchedulerError(RuntimeError):
    """The ``--scheduler`` value is malformed, or its scheduler cannot be reached."""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise SchedulerError(
            "--scheduler needs Dask distributed: pip install 'argos-rules[scale]'"
        ) from None
    return distributed


def parse_scheduler(spec: str) -> tuple[str, int | None]:
    """Split a ``--scheduler`` value into (kind, local worker count).

    ``local`` -> ``("local", None)`` (CPU count, at most 4 workers); ``local:N`` ->
    ``("local", N)``; anything else is a scheduler address (``tcp://host:8786``, ``host:8786``)
    returned as ``(address, None)``.
    """
    spec = spec.strip()
    if not spec:
        raise SchedulerError("--scheduler is empty: give ADDRESS, 'local' or 'local:N'")
    if spec == "local":
        return "local", None
    if spec.startswith("local:"):
        tail = spec.split(":", 1)[1]
        if not tail.isdigit() or int(tail) < 1:
            raise SchedulerError(f"--scheduler {spec!r}: N in 'local:N' must be an integer >= 1")
        return "local", int(tail)
    if _ADDRESS.fullmatch(spec) is None:
        raise SchedulerError(
            f"--scheduler {spec!r} is not 'local', 'local:N' or a scheduler address "
            "[SCHEME://]HOST:PORT (e.g. tcp://10.0.0.5:8786)"
        )
    return spec, None


_ADDRESS = re.compile(
    r"(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}/?"
)
"""A Dask scheduler address: optional scheme, a host (or a bracketed IPv6) and a port."""


def _probe(address: str, timeout_s: float) -> None:
    """Open and close one TCP connection to ``address``: a refused or unroutable scheduler fails
    here at once with a clear :class:`SchedulerError`, before a Dask client exists (a client that
    failed to start waits a minute in its finalizer and prints a traceback)."""
    location = address.split("://", 1)[-1].rstrip("/")
    host, _, port = location.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SchedulerError(f"cannot reach the Dask scheduler at {address!r}: {reason}") from None


class DaskExecutor:
    """Runs training units and evaluation tasks on a Dask cluster.

    Use :meth:`connect` (``--scheduler`` values) or pass an existing :class:`distributed.Client`
    (typed ``Any``: Dask's client API is untyped).
    A context manager: closing it closes the client and the local cluster it started (a remote
    scheduler is left running).

    Attributes:
        client: the Dask client.
        retries: extra attempts for a task that raised (worker deaths are handled by the
            scheduler's ``allowed-failures``).
    """

    def __init__(self, client: Any, *, retries: int = 2, cluster: Any = None) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.client = client
        self.retries = retries
        self._cluster = cluster

    @classmethod
    def connect(cls, scheduler: str, *, retries: int = 2, timeout_s: float = 30.0) -> DaskExecutor:
        """Connect to ``scheduler`` (an address), or start a local cluster for ``local[:N]``.

        A local cluster has N single-threaded worker processes (rules and numpy release little
        of the GIL; processes also isolate a crashing unit). Raises :class:`SchedulerError` when
        the scheduler cannot be reached within ``timeout_s``.
        """
        distributed = _import_distributed()
        kind, n = parse_scheduler(scheduler)
        if kind == "local":
            workers = n if n is not None else default_workers()
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # no dashboard, and its HTTP endpoint on a free loopback port (not 8787)
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                host="127.0.0.1",
            )
            client = distributed.Client(cluster, set_as_default=False)
            return cls(client, retries=retries, cluster=cluster)
        _probe(kind, timeout_s)
        try:
            client = distributed.Client(kind, timeout=timeout_s, set_as_default=False)
        except (OSError, ValueError) as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {kind!r}: {exc}") from None
        return cls(client, retries=retries)

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return str(self.client.scheduler.address)

    def n_workers(self) -> int:
        """Workers currently connected to the scheduler."""
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def close(self) -> None:
        """Close the client, and the local cluster if this executor started one."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- training ------------------------------------------------------------------------------
    def run_training(
        self, generator: Generator, jobs: Sequence[TrainJob]
    ) -> Iterator[GeneratedUnit]:
        """Generate every unit as a Dask task (:func:`argos.training.generator.generate_unit`);
        yield each :class:`~argos.training.generator.GeneratedUnit` as it finishes (the
        :class:`~argos.training.generator.UnitExecutor` protocol)."""
        distributed = _import_distributed()
        from argos.training.generator import generate_unit

        run = uuid.uuid4().hex[:8]
        futures = [
            self.client.submit(
                generate_unit,
                generator,
                job,
                key=f"argos-train-{run}-{i}",
                retries=self.retries,
                pure=False,
            )
            for i, job in enumerate(jobs)
        ]
        try:
            for fut in distributed.as_completed(futures, loop=self.client.loop):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    # -- evaluation ----------------------------------------------------------------------------
    def run_evaluation(
        self,
        tasks: Sequence[EvalTask],
        dataset: Dataset,
        *,
        delay: int,
        with_scores: bool,
        progress: ProgressCallback | None = None,
    ) -> list[SeriesResult]:
        """Run the (method, trial, unit) evaluation tasks; the dataset is sent to every worker
        once. Methods are looked up by name in the workers: they must be registered when
        :mod:`argos.methods` is imported there (plugins registered at run time in the driver are
        not visible to remote workers)."""
        distributed = _import_distributed()
        from argos.evaluation.harness import run_eval_task

        run = uuid.uuid4().hex[:8]
        shared = self.client.scatter(dataset, broadcast=True, hash=False)
        futures = {
            self.client.submit(
                run_eval_task,
                task,
                shared,
                delay,
                with_scores,
                key=f"argos-eval-{run}-{i}",
                retries=self.retries,
                pure=False,
            ): task
            for i, task in enumerate(tasks)
        }
        if progress:
            progress(0, len(tasks), "running")
        rows: list[SeriesResult] = []
        try:
            for n, fut in enumerate(
                distributed.as_completed(list(futures), loop=self.client.loop), start=1
            ):
                rows.extend(fut.result())
                task = futures[fut]
                if progress:
                    progress(n, len(tasks), f"{task.method} on {task.group}")
        finally:
            self.client.cancel(list(futures))
        return rows


# --------------------------------------------------------------------------------------------
# LLM limits shared by all workers
# --------------------------------------------------------------------------------------------


class _SharedLedger:
    """The shared ledger's storage: a :class:`~argos.llm.usage.LedgerState` kept as a plain dict
    under a key of the scheduler's metadata store (read and written only under the budget
    lock)."""

    def __init__(self, client: Any, key: list[str]) -> None:
        self.client = client
        self.key = key

    def get(self) -> LedgerState:
        value = self.client.get_metadata(self.key, default=None)
        return LedgerState.from_dict(None if value is None else dict(value))

    def set(self, state: LedgerState) -> None:
        self.client.set_metadata(self.key, state.to_dict())


class SharedLimitsChatModel(BaseChatModel):
    """A :class:`~argos.llm.interface.ChatModel` whose concurrency and budget are shared
    cluster-wide.

    Put it INSIDE the per-worker stack (``AgentGenerator(chat_model=SharedLimitsChatModel(...))``
    becomes ``Metered(Caching(SharedLimits(endpoint)))``): cache hits never reach it, so replayed
    calls cost nothing, and every call that does reach the endpoint holds one lease of the
    semaphore ``argos-llm-{name}`` (at most ``max_concurrent`` in flight across all workers) and
    is charged to the ledger ``argos-budget-{name}``.

    Picklable: the endpoint is built lazily in the worker from ``llm`` (an
    :class:`~argos.llm.config.LLMConfig`) unless ``inner`` is given (tests pass a fake model).
    Inside a Dask task it reaches the scheduler with the worker's client; in the driver (a unit run
    locally) pass ``client``, the run's Dask client.

    Attributes:
        name: identifies the run (the semaphore, lock and ledger names derive from it).
        budget: the run-wide budget (tokens, dollars, calls).
        max_concurrent: LLM calls in flight across the cluster.
        prices: price table for cost accounting (model name -> price).
    """

    def __init__(
        self,
        name: str,
        *,
        budget: Budget,
        max_concurrent: int,
        inner: ChatModel | None = None,
        llm: LLMConfig | None = None,
        prices: dict[str, Price] | None = None,
        client: Any = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if inner is None and llm is None:
            raise ValueError("give the endpoint: inner= (a ChatModel) or llm= (an LLMConfig)")
        self.name = name
        self.budget = budget
        self.max_concurrent = max_concurrent
        self.prices = dict(prices or (llm.price_table() if llm is not None else {}))
        self._inner = inner
        self._llm = llm
        self._client = client
        self._prims: tuple[Any, Any, _SharedLedger] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None  # a worker uses its own client
        state["_prims"] = None
        if self._llm is not None:
            state["_inner"] = None  # rebuilt in the worker (vendor clients do not pickle)
        return state

    @property
    def model(self) -> str:
        """The endpoint's model name."""
        if self._inner is not None:
            return self._inner.model
        assert self._llm is not None
        return str(self._llm.model)

    def _endpoint(self) -> ChatModel:
        if self._inner is None:
            from argos.llm.config import build_chat_model

            assert self._llm is not None
            self._inner = build_chat_model(self._llm)
        return self._inner

    def _cost(self, model: str, usage: Usage) -> float:
        return call_cost(model, usage, self.prices) or 0.0

    def _primitives(self) -> tuple[Any, Any, _SharedLedger]:
        """The semaphore, lock and ledger (made once per process). Inside a Dask task they talk
        to the scheduler through the worker's client; elsewhere through ``client``."""
        if self._prims is not None:
            return self._prims
        distributed = _import_distributed()
        try:
            distributed.get_worker()
            client = distributed.get_client()
        except ValueError:
            if self._client is None:
                raise RuntimeError(
                    "SharedLimitsChatModel used outside a Dask task: pass client= (the run's "
                    "Dask client)"
                ) from None
            client = self._client
        rpc, loop = client.scheduler, client.loop
        self._prims = (
            distributed.Semaphore(
                max_leases=self.max_concurrent,
                name=f"argos-llm-{self.name}",
                scheduler_rpc=rpc,
                loop=loop,
            ),
            distributed.Lock(f"argos-budget-lock-{self.name}", scheduler_rpc=rpc, loop=loop),
            _SharedLedger(client, ["argos-budget", self.name]),
        )
        return self._prims

    def resume_from(self, calls: int, tokens: int, cost_usd: float) -> None:
        """Count what the run spent before (a resumed run, from its checkpoints) against the
        budget, unless the shared ledger already holds at least that much (the same scheduler
        kept it)."""
        _, lock, ledger = self._primitives()
        with lock:
            ledger.set(ledger.get().resumed(Spend(calls, tokens, cost_usd)))

    def spent(self) -> LedgerState:
        """The shared ledger as it stands (for reports and tests)."""
        _, lock, ledger = self._primitives()
        with lock:
            return ledger.get()

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Reserve the call's worst case in the shared ledger (or raise
        :class:`~argos.llm.interface.LLMBudgetExceeded`), hold a cluster-wide lease while calling
        the endpoint, then charge the real usage. A failed call is charged nothing."""
        sem, lock, ledger = self._primitives()
        model = self.model
        prompt_tokens, out = estimate_tokens(messages), options.max_tokens or 0
        with lock:
            state, reservation = ledger.get().reserve(
                self.budget,
                agent=agent,
                prompt_tokens=prompt_tokens,
                max_output_tokens=out,
                cost_usd=self._cost(model, Usage(prompt_tokens, out)),
            )
            ledger.set(state)
        used: Spend | None = None
        try:
            with sem:
                result = self._endpoint().complete(messages, agent=agent, **options.as_kwargs())
            usage = result.usage
            used = Spend(1, usage.total_tokens, self._cost(result.model, usage))
            return result
        finally:
            with lock:
                ledger.set(ledger.get().settle(reservation, used))


def wait_for_workers(executor: DaskExecutor, n: int, timeout_s: float = 60.0) -> None:
    """Block until ``n`` workers are connected (raises ``TimeoutError`` after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while executor.n_workers() < n:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {executor.n_workers()} of {n} Dask workers after {timeout_s}s"
            )
        time.sleep(0.1)


@contextmanager
def executor_for(scheduler: str | None, *, retries: int = 2) -> Iterator[DaskExecutor | None]:
    """The executor a ``--scheduler`` value asks for (None = the local process pool), closed on
    exit. Raises :class:`SchedulerError` for a bad value or an unreachable scheduler."""
    if scheduler is None:
        yield None
        return
    with DaskExecutor.connect(scheduler, retries=retries) as executor:
        yield executor
