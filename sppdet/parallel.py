"""Parallel and distributed execution, in one place that every command shares.

sppdet's slow work is a pipeline of independent tasks: per image (decode → selective search →
conv maps → cache), per class (SVM hard-negative mining, box regression) and per image again
(detection). :func:`make_executor` gives an executor whose :meth:`Executor.map` runs a picklable
task function over items and yields the results **in input order** as they become available,
with a bounded look-ahead, so the driver can consume results (convolve, score) while workers
keep computing. Three backends, one interface:

* ``serial`` (``workers=1``): in this process, no pool, no extra processes;
* ``pool``: a ``concurrent.futures.ProcessPoolExecutor`` started with ``forkserver`` (``spawn``
  where that is missing; never ``fork``: torch's and OpenMP's thread pools do not survive it),
  each worker single-threaded so that N workers on N cores do not oversubscribe them;
* ``ray``: the same task functions as Ray tasks (``num_cpus=1``, ``num_gpus=1`` for GPU tasks,
  Ray's own retries), for a cluster. Ray is an optional extra: ``pip install 'sppdet[ray]'``.

A task that raises stops the map with one :class:`~sppdet.errors.UserError` line naming the item
(its image or class) and the original error; the pending tasks are cancelled. Ctrl-C cancels the
pending tasks and stops the workers without waiting for them.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from .errors import UserError
from .progress import progress
# the thread helpers live in runtime; imported here for the workers and for old imports
from .runtime import THREAD_ENV, available_cores, single_threaded, torch_threads  # noqa: F401

log = logging.getLogger(__name__)

_NO_SHARED = object()


def _exit_with(driver: int, every: float = 1.0) -> None:
    """End this worker once the ``driver`` process is gone. A pool's workers wait on a queue
    whose pipe they themselves hold open, so a driver killed outright (``kill -9``, the
    out-of-memory killer) never wakes them: without this they stayed alive, each holding a
    trunk in memory, until the machine rebooted."""
    while True:
        time.sleep(every)
        try:
            os.kill(driver, 0)
        except (ProcessLookupError, PermissionError):  # gone, or its pid now another user's process
            os._exit(0)


def init_worker(driver: int | None = None) -> None:
    """Make a worker process single-threaded (the pool supplies the parallelism), tune its
    allocator, leave Ctrl-C to the driver (which cancels the tasks and stops the pool), and,
    given the ``driver``'s pid, end with it (:func:`_exit_with`)."""
    if driver is not None:
        threading.Thread(target=_exit_with, args=(driver,), name="sppdet-exit-with-driver", daemon=True).start()
    for k in THREAD_ENV:
        os.environ[k] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    from .runtime import tune_cpu_allocator

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set (a forked interpreter)
        torch.set_num_interop_threads(1)
    cv2.setNumThreads(1)
    threadpool_limits(1)
    tune_cpu_allocator()


_PROCESS_STATE: dict[Any, Any] = {}


def process_local(key: Any, build: Callable[[], Any]) -> Any:
    """A per-process memo (e.g. a worker's conv trunk, built on its first task and kept)."""
    if key not in _PROCESS_STATE:
        _PROCESS_STATE[key] = build()
    return _PROCESS_STATE[key]


def set_process_local(key: Any, value: Any) -> None:
    """Put an object the driver already has (its own trunk) where in-process tasks look."""
    _PROCESS_STATE[key] = value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(desc: str, label: str, exc: BaseException) -> UserError:
    if isinstance(exc, UserError):  # already a user-facing line: keep it, add where
        return UserError(f"{desc} failed on {label}: {' '.join(str(exc).split())}")
    return UserError(f"{desc} failed on {label}: {_one_line(exc)}")


def _call(fn: Callable, shared: Any, item: Any) -> Any:
    return fn(item) if shared is _NO_SHARED else fn(shared, item)


def _apply(fn: Callable, *args: Any) -> Any:  # what a worker runs (the sentinel does not travel)
    return fn(*args)


def _apply_in_child(fn: Callable, *args: Any) -> Any:
    """Run a Ray task in a single-threaded child process of the Ray worker (kept for its next
    tasks). A Ray worker runs threads of its own that call C ``rand()``, and OpenCV's selective
    search ranks its regions with ``rand()`` after sppdet reseeds it, so inside a Ray worker an
    image's windows came out differently about once in six runs; a child without those
    threads computes exactly what ``--workers`` does."""
    key = "ray-task-child"
    pool = process_local(key, lambda: ProcessPoolExecutor(1, mp_context=_mp_context(), initializer=init_worker,
                                                            initargs=(os.getpid(),)))
    try:
        return pool.submit(_apply, fn, *args).result()
    except BrokenProcessPool:
        _PROCESS_STATE.pop(key, None)  # the next try (Ray retries) starts a new child
        raise


def _args(shared: Any, item: Any) -> tuple:
    return (item,) if shared is _NO_SHARED else (shared, item)


class Executor:
    """Ordered, progress-reporting map of picklable task functions over items."""

    kind = "serial"
    workers = 1

    def map(self, fn: Callable, items: Iterable, desc: str = "tasks", unit: str = "task",
            label: Callable[[Any], str] = str, shared: Any = _NO_SHARED, gpu: bool = False) -> Iterator:
        """Yield ``fn(item)`` (or ``fn(shared, item)``) for each item, in input order.

        ``shared``: one argument common to every task, sent once (Ray: put in the object store
        once) instead of inside each item. ``gpu``: the task wants a GPU (Ray schedules it on a
        GPU when the cluster has one). ``label(item)`` names the item in error messages.
        """
        raise NotImplementedError

    def driver_threads(self) -> contextlib.AbstractContextManager:
        """Context for the driver's own work while this executor's tasks run (torch threads)."""
        return contextlib.nullcontext()

    @property
    def gpus(self) -> int:
        return 0

    def close(self, cancel: bool = False) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} workers={self.workers}>"


class SerialExecutor(Executor):
    """Tasks run in the calling process, one after the other (``--workers 1``)."""

    def map(self, fn, items, desc="tasks", unit="task", label=str, shared=_NO_SHARED, gpu=False):
        items = list(items)
        with progress(total=len(items), desc=desc, unit=unit) as bar:
            for item in items:
                try:
                    out = _call(fn, shared, item)
                except Exception as exc:  # noqa: BLE001 - reported with its item, like the pools
                    raise _failure(desc, label(item), exc) from exc
                bar.update(1)
                yield out


def _mp_context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # The fork server imports torch, OpenCV and sppdet once; each worker forks from it ready to
    # run (no thread pool exists yet to be lost), instead of importing them anew.
    ctx.set_forkserver_preload(["sppdet.cache", "sppdet.training"])
    return ctx


class _LookaheadExecutor(Executor):
    """The ordered map of the pool and Ray backends: keep ``lookahead`` tasks in flight, yield
    results in input order, count every finished task on the progress bar, and cancel what is
    left on an error, Ctrl-C or an early stop. Backends give ``_submit``, ``_finished`` (which
    of the given handles are done, waiting up to ``timeout``), ``_result`` and ``_cancel``."""

    lookahead = 1

    def _submit(self, fn: Callable, args: tuple) -> Any:
        raise NotImplementedError

    def _finished(self, handles: list, timeout: float) -> list:
        raise NotImplementedError

    def _result(self, handle: Any, desc: str, name: str) -> Any:
        raise NotImplementedError

    def _cancel(self, handle: Any) -> None:
        raise NotImplementedError

    def _shared(self, shared: Any) -> Any:
        return shared

    def map(self, fn, items, desc="tasks", unit="task", label=str, shared=_NO_SHARED, gpu=False):
        items = list(items)
        self._gpu = gpu
        shared = shared if shared is _NO_SHARED else self._shared(shared)
        pending: collections.deque = collections.deque()
        done: set = set()  # ids of handles finished (and counted) but not yet yielded
        it = iter(items)
        bar = progress(total=len(items), desc=desc, unit=unit)
        ok = False
        try:
            while True:
                while len(pending) < self.lookahead:
                    item = next(it, _NO_SHARED)
                    if item is _NO_SHARED:
                        break
                    pending.append((item, self._submit(fn, _args(shared, item))))
                if not pending:
                    break
                item, head = pending[0]
                while id(head) not in done:
                    waiting = [h for _, h in pending if id(h) not in done]
                    newly = self._finished(waiting, timeout=1.0)
                    done.update(id(h) for h in newly)
                    bar.update(len(newly))
                pending.popleft()
                done.discard(id(head))
                yield self._result(head, desc, label(item))
            ok = True
        finally:
            bar.close()
            if not ok:  # an error, Ctrl-C, or the consumer stopped early
                for _, h in pending:
                    with contextlib.suppress(Exception):
                        self._cancel(h)


class PoolExecutor(_LookaheadExecutor):
    """Worker processes on this machine (``--workers N``), each single-threaded."""

    kind = "pool"

    def __init__(self, workers: int, lookahead: int | None = None):
        self.workers = int(workers)
        self.lookahead = lookahead or 4 * self.workers
        self._pool: ProcessPoolExecutor | None = None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:  # started on first use: commands that find everything cached pay nothing
            self._pool = ProcessPoolExecutor(self.workers, mp_context=_mp_context(), initializer=init_worker,
                                             initargs=(os.getpid(),))
        return self._pool

    def driver_threads(self):
        # N single-threaded workers on N cores leave nothing for a multi-threaded driver:
        # oversubscribed, SPP-net's small ops ran ~10× slower on 2 cores. One thread, unless
        # the machine has cores beyond the workers.
        return torch_threads(max(1, available_cores() - self.workers))

    def _submit(self, fn, args):
        return self.pool.submit(_apply, fn, *args)

    def _finished(self, handles, timeout):
        if not any(f.done() for f in handles):
            wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return [f for f in handles if f.done()]

    def _result(self, handle, desc, name):
        try:
            return handle.result()
        except BrokenProcessPool as exc:
            raise UserError(f"{desc} failed on {name}: a worker process died ({exc}); "
                            "out of memory? Try fewer --workers (in a script of your own: is the code "
                            "that starts the pool under `if __name__ == '__main__':`?)") from exc
        except Exception as exc:  # noqa: BLE001
            raise _failure(desc, name, exc) from exc

    def _cancel(self, handle):
        handle.cancel()

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not cancel:
            pool.shutdown(wait=True)
            return
        # Ctrl-C or an error: drop queued tasks and stop the running ones now (a selective search
        # can take seconds), rather than waiting for them.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(timeout=5)


class RayExecutor(_LookaheadExecutor):
    """Tasks scheduled by Ray across a cluster (``--ray auto|local|ADDRESS``)."""

    kind = "ray"

    def __init__(self, address: str = "auto", max_retries: int = 2, lookahead: int | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray, which is not installed: pip install 'sppdet[ray]'") from None
        self.ray = ray
        self.max_retries = int(max_retries)
        self._owned = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=True)
            try:
                if address == "local":
                    ray.init(**kwargs)
                else:
                    ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise UserError(f"--ray {address}: no Ray cluster to connect to ({_one_line(exc)}); start "
                                "one with `ray start --head` or use --ray local") from None
            self._owned = True
        res = ray.cluster_resources()
        self.workers = max(1, int(res.get("CPU", 1)))
        self._gpus = int(res.get("GPU", 0))
        self.lookahead = lookahead or 2 * self.workers + 4
        self._remotes: dict = {}

    @property
    def gpus(self) -> int:
        return self._gpus

    def driver_threads(self):
        # a local cluster's workers share this machine's cores with the driver
        return torch_threads(1)

    def _remote(self, gpu: bool):
        key = bool(gpu and self._gpus)
        if key not in self._remotes:
            opts = dict(num_cpus=1, max_retries=self.max_retries, retry_exceptions=True)
            if key:
                opts["num_gpus"] = 1
            self._remotes[key] = self.ray.remote(_apply_in_child).options(**opts)
        return self._remotes[key]

    def _shared(self, shared):
        return self.ray.put(shared)  # sent to the object store once, not with every task

    def _submit(self, fn, args):
        return self._remote(self._gpu).remote(fn, *args)

    def _finished(self, handles, timeout):
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        # count every task finished so far, not only the first
        return self.ray.wait(handles, num_returns=len(handles), timeout=0)[0] if ready else ready

    def _result(self, handle, desc, name):
        ray = self.ray
        try:
            return ray.get(handle)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise _failure(desc, name, cause) from None
        except ray.exceptions.RayError as exc:
            raise UserError(f"{desc} failed on {name}: {_one_line(exc)}") from None

    def _cancel(self, handle):
        self.ray.cancel(handle, force=True)

    def close(self, cancel: bool = False) -> None:
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()  # a cluster we started: its tasks stop with it
        self._owned = False


def make_executor(workers: int | None = None, ray: str | None = None) -> Executor:
    """``workers``: processes on this machine (default: the cores available to this process;
    1: in-process, no pool). ``ray``: ``"auto"`` (the running cluster), ``"local"`` (start one
    here) or a cluster address; overrides ``workers``."""
    if ray:
        return RayExecutor(ray)
    n = available_cores() if workers is None else int(workers)
    if n < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return SerialExecutor() if n == 1 else PoolExecutor(n)

