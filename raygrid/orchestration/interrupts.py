"""How a `raygrid run` that does not end by itself is recorded: Ctrl-C, SIGTERM, a crash, or an earlier kill.

No run is ever left RUNNING: an interrupted run closes its running cells and its parent as KILLED
and exits non-zero; a crash closes them as FAILED; runs a SIGKILLed `raygrid run` could not close
are closed as KILLED by the next run of the grid (which holds the grid's lock, raygrid.orchestration.run_lock,
so they cannot belong to a run still going). The reason is on each run (tag raygrid.error).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

INTERRUPTED = "interrupted (Ctrl-C / SIGTERM); rerun the same command to continue (finished cells are skipped)"
ORPHANED = "its raygrid run was killed or crashed before closing it; closed by the next run of the grid"


# Seconds an interrupted run may take to unwind before it is recorded and ended from a watchdog thread
# (seen on a loaded machine: the KeyboardInterrupt swallowed inside Ray, training going on).
GRACE_S = 10.0
_signalled = threading.Event()
_received: list[int] = []  # the first signal of this run (SIGINT or SIGTERM): it decides the exit code
_handler = None  # raygrid's handler while sigterm_as_interrupt is open (reinstall_handlers puts it back)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum, frame):
    if _signalled.is_set():
        # A second Ctrl-C (or a SIGTERM after one) while the run closes: ignored, so it cannot abort the
        # bookkeeping half-way and leave the parent RUNNING; the watchdog bounds the wait to GRACE_S.
        print("\nraygrid: already stopping; recording the running cells as KILLED", file=sys.stderr, flush=True)
        return
    _received.append(signum)
    _signalled.set()
    raise KeyboardInterrupt(f"signal {signum}")


def exit_code() -> int:
    """The shell's code for the signal that stopped the run: 130 (SIGINT), 143 (SIGTERM, `ray job stop`)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Ctrl-C and SIGTERM (a job stop, `kill`) raise KeyboardInterrupt, and arm recorded_outcome's watchdog."""
    global _handler
    _signalled.clear()  # an earlier run in this process may have been interrupted
    _received.clear()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in _SIGNALS}
    _handler = _interrupt
    try:
        yield
    finally:
        _handler = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_while_exiting() -> None:
    """Ignore Ctrl-C and SIGTERM from here to the process's end (the `raygrid` program after an interrupt):
    a second Ctrl-C during Ray's own shutdown (atexit) broke it and the process died of SIGSEGV."""
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def reinstall_handlers() -> None:
    """Put raygrid's handlers back after ray.init(), which sets its own SIGTERM handler (sys.exit): without
    this a `ray job stop` ended the run as a crash (cells FAILED "SystemExit", exit 134, no message)."""
    if _handler is not None and threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            signal.signal(sig, _handler)


@contextlib.contextmanager
def recorded_outcome(tracker):
    """Close what is RUNNING when the block is interrupted (KILLED) or crashes (FAILED), then re-raise."""
    done = threading.Event()
    threading.Thread(target=_watchdog, args=(tracker, done), daemon=True).start()
    try:
        yield
    except KeyboardInterrupt:
        tracker.interrupt_grid(INTERRUPTED)
        raise
    except BaseException as err:
        tracker.close_running(f"raygrid run crashed: {type(err).__name__}: {str(err)[:500]}", status="FAILED")
        tracker.end_grid(failed=True)
        raise
    finally:
        done.set()


def _watchdog(tracker, done: threading.Event) -> None:
    """After a signal, give the run GRACE_S to unwind; if it has not, record the interruption and exit 130/143."""
    while not done.wait(0.5):
        if _signalled.is_set() and not done.wait(GRACE_S):
            tracker.interrupt_grid(INTERRUPTED)
            print("\nraygrid: interrupted; running cells recorded as KILLED. Rerun the same command to continue.",
                  file=sys.stderr, flush=True)
            os._exit(exit_code())
