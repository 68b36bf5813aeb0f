"""How a `raygrid run` that does not end by itself is recorded: Ctrl-C, SIGTERM, a crash, or an earlier kill.

No run is ever left RUNNING: an interrupted run closes its running cells and its parent as KILLED
and exits non-zero; a crash closes them as FAILED; runs a SIGKILLed `raygrid run` could not close
are closed as KILLED by the next run of the grid (which holds the grid's lock, raygrid.run_lock,
so they cannot belong to a run still going). The reason is on each run (tag raygrid.error).
"""
from __future__ import annotations

import contextlib
import signal
import threading

INTERRUPTED = "interrupted (Ctrl-C / SIGTERM); rerun the same command to continue (finished cells are skipped)"
ORPHANED = "its raygrid run was killed or crashed before closing it; closed by the next run of the grid"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a job stop, `kill`) ends the run like Ctrl-C instead of killing it mid-write."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def recorded_outcome(tracker):
    """Close what is RUNNING when the block is interrupted (KILLED) or crashes (FAILED), then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        tracker.interrupt_grid(INTERRUPTED)
        raise
    except BaseException as err:
        tracker.close_running(f"raygrid run crashed: {type(err).__name__}: {str(err)[:500]}", status="FAILED")
        tracker.end_grid(failed=True)
        raise
