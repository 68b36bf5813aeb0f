"""raygrid's signal handlers: put back after ray.init() replaces them, SIGTERM -> 143, a repeated Ctrl-C ignored."""
import os
import signal
import sys
import time

import pytest

from raygrid.orchestration import interrupts


def _signal_self(sig: int) -> None:
    """Send `sig` to this process; Python runs its handler in the main thread during the sleep."""
    os.kill(os.getpid(), sig)
    time.sleep(0.5)


def _ray_init_like_handler(signum, frame):  # what ray.init() installs for SIGTERM
    sys.exit(signum)


def test_sigterm_after_ray_init_is_an_interrupt_with_exit_143():
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.sigterm_as_interrupt():
        signal.signal(signal.SIGTERM, _ray_init_like_handler)
        interrupts.reinstall_handlers()
        with pytest.raises(KeyboardInterrupt):
            _signal_self(signal.SIGTERM)
        assert interrupts.exit_code() == 143
    assert signal.getsignal(signal.SIGTERM) is before  # restored on exit


def test_without_reinstalling_ray_handler_would_exit():
    """The failure this guards against: Ray's handler turns SIGTERM into SystemExit, not an interrupt."""
    with interrupts.sigterm_as_interrupt():
        signal.signal(signal.SIGTERM, _ray_init_like_handler)
        with pytest.raises(SystemExit):
            _signal_self(signal.SIGTERM)


def test_a_second_ctrl_c_while_closing_is_ignored(capsys):
    closed = []
    with interrupts.sigterm_as_interrupt():
        try:
            _signal_self(signal.SIGINT)
        except KeyboardInterrupt:
            _signal_self(signal.SIGINT)  # the bookkeeping must survive this one
            closed.append("parent KILLED")
        assert interrupts.exit_code() == 130
    assert closed == ["parent KILLED"]
    assert "already stopping" in capsys.readouterr().err


def test_reinstall_outside_a_run_changes_nothing():
    before = signal.getsignal(signal.SIGTERM)
    interrupts.reinstall_handlers()
    assert signal.getsignal(signal.SIGTERM) is before


def test_ignore_while_exiting_ignores_both_signals():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        interrupts.ignore_while_exiting()
        _signal_self(signal.SIGINT)  # would raise KeyboardInterrupt with Python's default handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
