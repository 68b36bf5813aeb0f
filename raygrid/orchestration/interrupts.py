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


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Ctrl-C and SIGTERM (a job stop, `kill`) raise KeyboardInterrupt, and arm recorded_outcome's watchdog."""
    _signalled.clear()  # an earlier run in this process may have been interrupted
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        _signalled.set()
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    """After a signal, give the run GRACE_S to unwind; if it has not, record the interruption and exit 130."""
    while not done.wait(0.5):
        if _signalled.is_set() and not done.wait(GRACE_S):
            tracker.interrupt_grid(INTERRUPTED)
            print("\nraygrid: interrupted; running cells recorded as KILLED. Rerun the same command to continue.",
                  file=sys.stderr, flush=True)
            os._exit(130)
