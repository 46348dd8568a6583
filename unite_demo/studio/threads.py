"""The server's threads and memory: newest-wins tickets for live mode, sampling read ahead of streaming
on a thread of its own, and giving the memory finished runs freed back to the system."""

from __future__ import annotations

import ctypes
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from unite_demo.limits import CONCURRENT_RUNS


class Tickets:
    """Newest-wins per session: a run remembers the ticket it started under and stops once a newer
    one is issued for its session (live mode, Stop, a new Run)."""

    def __init__(self, max_sessions: int = 10_000):
        self.max_sessions = max_sessions
        self._n: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def bump(self, session: str) -> int:
        with self._lock:
            n = self._n.pop(session, 0) + 1
            self._n[session] = n
            while len(self._n) > self.max_sessions:
                self._n.popitem(last=False)
            return n

    def current(self, session: str) -> int:
        with self._lock:
            return self._n.get(session, 0)


def read_ahead(items: Iterator, stop: Callable[[], bool] = lambda: False, depth: int = 4) -> Iterator:
    """`items`, produced in a worker thread up to `depth` ahead of the consumer: the sampler computes
    step k+1 while the page encodes and sends the preview of step k. The producer stops before its next
    item once `stop()` is true or the consumer has closed (Stop, a client gone, a newer live run);
    its exceptions are raised in the consumer."""
    out: queue.Queue = queue.Queue(depth)
    closed = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not closed.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            while not (closed.is_set() or stop()):
                try:
                    item = next(items)
                except StopIteration:
                    break
                if not put((item, None)):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((end, e))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put((end, None))

    threading.Thread(target=produce, name="read-ahead", daemon=True).start()
    try:
        while True:
            item, error = out.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        closed.set()


def release_memory() -> None:
    """Give the memory a finished run freed back to the system. The runs allocate in the threads that
    serve them, and glibc keeps what each thread's arena freed while any small block in it lives on (the
    frames the result cache keeps); malloc_trim hands it back. Without glibc this does nothing."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


try:
    LIBC = ctypes.CDLL(None)
    MALLOC_TRIM = LIBC.malloc_trim
except (OSError, AttributeError):
    LIBC = MALLOC_TRIM = None


def tune_malloc() -> None:
    """For a long-running server (app.start calls it before the server starts its threads), glibc's
    allocator set so that memory freed by finished runs goes back to the system:
    - a fixed mmap threshold of 1 MB (M_MMAP_THRESHOLD): glibc otherwise raises its threshold once a
      large block is freed, and the final-image stage's few-MB buffers would stay in the thread arenas;
    - one arena per concurrent run (M_ARENA_MAX): otherwise each worker thread that takes a turn at a
      run leaves an arena behind that keeps its high-water mark.
    Without glibc this does nothing."""
    if LIBC is not None and hasattr(LIBC, "mallopt"):
        LIBC.mallopt(-3, 1 << 20)
        LIBC.mallopt(-8, CONCURRENT_RUNS)
