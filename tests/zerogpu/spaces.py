"""A stand-in for Hugging Face's `spaces` package as ZeroGPU runs it, for tests/test_spaces.py: the
function that `spaces.GPU` wraps runs in a forked process, and every value it yields comes back to the
server pickled through a pipe (an exception too). When the server stops reading (Stop, a client gone),
the worker is told to stop and must end within a frame; it is killed if it does not.

Put this folder first on PYTHONPATH and app.py's `on_spaces_gpu` wraps /generate with it. Each call
appends one line to $SPACES_STANDIN_LOG: "start PID", "frame PID N BYTES" per pickled frame,
"closed PID TIME" when the server stopped reading before the end, "end PID EXITCODE TIME" once the
worker has exited (-9: killed); a worker that takes over 3 s to close dumps its threads' stacks to
$SPACES_STANDIN_LOG.stacks."""

from __future__ import annotations

import faulthandler
import functools
import multiprocessing
import os
import pickle
import threading
import time

_LOG = os.environ.get("SPACES_STANDIN_LOG")


def _log(line: str) -> None:
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(line + "\n")


def _send(conn, message) -> bool:
    """Pickle one message to the server; False once the server has stopped reading."""
    try:
        conn.send_bytes(pickle.dumps(message))
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def _worker(fn, args, kwargs, conn, stop) -> None:
    gen = fn(*args, **kwargs)
    try:
        for value in gen:
            if stop.is_set() or not _send(conn, ("frame", value)):  # every frame crosses the process boundary
                break
        else:
            _send(conn, ("end", None))
    except BaseException as e:  # noqa: BLE001 - sent back and raised in the server, as ZeroGPU does
        _send(conn, ("error", e))
    finally:
        stacks = open(_LOG + ".stacks", "a") if _LOG else None
        if stacks:  # a worker that takes over 3 s to close writes down where its threads are
            faulthandler.dump_traceback_later(3, file=stacks)
        gen.close()
        conn.close()
        if stacks:
            faulthandler.cancel_dump_traceback_later()
            stacks.close()


def _reap(proc) -> None:
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    _log(f"end {proc.pid} {proc.exitcode} {time.time():.3f}")


def GPU(fn=None, duration=None):  # noqa: N802 - the name spaces exposes
    if fn is None:  # @spaces.GPU(duration=...)
        return functools.partial(GPU, duration=duration)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = multiprocessing.get_context("fork")
        here, there = ctx.Pipe(duplex=False)
        stop = ctx.Event()
        proc = ctx.Process(target=_worker, args=(fn, args, kwargs, there, stop), daemon=True)
        proc.start()
        there.close()
        _log(f"start {proc.pid}")
        finished = False
        try:
            while True:
                data = here.recv_bytes()
                kind, value = pickle.loads(data)
                if kind == "end":
                    finished = True
                    return
                if kind == "error":
                    finished = True
                    raise value
                _log(f"frame {proc.pid} {len(data)}")
                yield value
        finally:
            if not finished:  # the server stopped reading: Stop, or the client went away
                _log(f"closed {proc.pid} {time.time():.3f}")
            stop.set()
            here.close()  # a worker blocked on a full pipe sees it closed
            # The worker is waited for in a thread of its own: this may run in the server's event loop.
            threading.Thread(target=_reap, args=(proc,), daemon=True).start()

    return wrapper
