"""The quiet console: raygrid's per-cell lines on the terminal, everything else in <out>/logs (Ray imported, never started)."""
import itertools
import os
import sys
import warnings
from types import SimpleNamespace

from raygrid.orchestration.console import CellLines, Console, Heartbeat, progress_text, quiet_console
from raygrid.orchestration.payload import TrialPayload
from raygrid.orchestration.summary import RunSummary
from raygrid.spec.config import CellConfig, Resources
from raygrid.training.progress import ProgressFigures
from raygrid.training.reports import EPOCH, FINAL, PROGRESS, CellReport


class Lines(Console):
    def __init__(self):
        super().__init__()
        self.lines = []

    def line(self, text):
        self.lines.append(text)


def trial(name, epochs=2, last_result=None):
    cell = CellConfig(data={"dataset": "imdb", "path": "/d"}, model={"checkpoint": "/ck"}, optim={"epochs": epochs})
    payload = TrialPayload(name=name, config=cell, axis={}, resources=Resources(), use_gpu=False, storage_path="/s")
    return SimpleNamespace(config={"cell": payload.to_tune()}, last_result=last_result or {})


def test_each_cell_prints_start_epochs_and_outcome_as_mlflow_recorded_it():
    console, summary = Lines(), RunSummary()
    lines = CellLines(console, summary, ["a", "b"])
    lines.on_trial_start(0, [], trial("a"))
    lines.on_trial_start(0, [], trial("a"))  # a restarted trial is not a second start
    epoch = CellReport(EPOCH, {"train_loss": 0.69312, "val_f1_macro": 0.5, "lr": 1e-4}, step=0).to_wire()
    final = CellReport(FINAL, {"test_f1_macro": 0.61}).to_wire()
    lines.on_trial_result(0, [], trial("a"), epoch)
    lines.on_trial_result(0, [], trial("a"), final)
    summary.finished.append("a")
    lines.on_trial_complete(0, [], trial("a", last_result=final))
    lines.on_trial_start(0, [], trial("b"))
    summary.failed["b"] = "ValueError: model.n_freeze: too many layers"  # MlflowCells ran first
    lines.on_trial_error(0, [], trial("b"))
    assert console.lines[0] == "[1/2] a: started" and len([x for x in console.lines if "started" in x]) == 2
    assert console.lines[1] == "[1/2] a: epoch 1/2: train_loss 0.6931, val_f1_macro 0.5000"
    assert console.lines[2].startswith("[1/2] a: finished in ") and console.lines[2].endswith("test_f1_macro 0.6100")
    assert console.lines[4].startswith("[2/2] b: failed after ") and "ValueError: model.n_freeze" in console.lines[4]
    table = lines.table()
    assert table[0] == "| cell | status | epoch | train_loss | val score |"
    assert table[2] == "| a | FINISHED | 1/2 | 0.6931 | val_f1_macro 0.5000 |" and table[3].startswith("| b | FAILED |")


def test_quiet_console_sends_fd_and_python_output_to_the_log_and_raygrid_lines_to_the_terminal(tmp_path, capfd):
    with quiet_console(tmp_path / "logs") as console:
        print("Tune status box")
        os.write(2, b"raylet: C++ says hello\n")  # what no Python stream wrapper would catch
        sys.stderr.write("(RayTrainWorker pid=1) worker log\n")
        warnings.warn_explicit("documents shared between splits", UserWarning, "/x/raygrid/data/cache.py", 1)
        console.line("[1/8] cell: started")
    out, err = capfd.readouterr()
    assert "[1/8] cell: started" in out and "warning: documents shared between splits" in out
    assert "Tune" not in out + err and "C++" not in out + err and "worker log" not in out + err
    log = console.log_file.read_text()
    assert console.log_file.parent == tmp_path / "logs" and console.log_file.name.startswith("ray-")
    assert "Tune status box" in log and "C++ says hello" in log and "worker log" in log
    print("after")  # streams are restored
    assert "after" in capfd.readouterr().out


def test_a_run_that_diverted_nothing_leaves_no_log(tmp_path):
    with quiet_console(tmp_path / "logs") as console:
        console.line("refused")
    assert not (tmp_path / "logs").exists()


def test_the_cell_lines_callback_pickles_as_tune_saves_it(tmp_path):
    import pickle

    with quiet_console(tmp_path / "logs") as console:
        callback = CellLines(console, RunSummary(), ["a"])
        copy = pickle.loads(pickle.dumps(callback))
    assert copy.console.log_file == console.log_file and list(copy.cells) == ["a"]


def test_streams_captured_during_the_run_stay_writable_after_it(tmp_path):
    """Ray's tqdm bars keep the sys.stderr of the run and write to it at exit (EBADF once crashed `raygrid run`)."""
    with quiet_console(tmp_path / "logs") as console:
        captured = sys.stderr
        captured.write("bar 1/2\n")
    captured.write("bar 2/2, at exit\n")
    captured.flush()
    assert "bar 2/2, at exit" in console.log_file.read_text()


def test_what_a_finished_raygrid_process_prints_at_exit_goes_to_its_log(tmp_path):
    import subprocess

    log = tmp_path / "ray.log"
    code = ("import atexit, os, sys; from pathlib import Path; from raygrid.orchestration.console import divert_the_rest;"
            "print('report'); atexit.register(lambda: print('(RayTrainWorker pid=1) leftover', file=sys.stderr));"
            f"divert_the_rest(Path({str(log)!r})); os.write(1, b'late fd write\\n')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "report\n" and out.stderr == ""
    assert "leftover" in log.read_text() and "late fd write" in log.read_text()


def test_raygrid_warnings_reach_the_terminal_and_a_caller_that_records_warnings(tmp_path, capsys):
    """pytest.warns / catch_warnings(record=True) around a run still see raygrid's warnings (a rerun's
    "damaged cache entry"); the terminal shows them too, and other libraries' warnings go to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_console(tmp_path / "logs"):
            warnings.warn_explicit("damaged cache entry x", UserWarning, f"/site/raygrid{os.sep}data{os.sep}cache.py", 1)
            warnings.warn_explicit("a library's remark", UserWarning, "/site/otherlib/mod.py", 1)
    assert [str(w.message) for w in caught] == ["damaged cache entry x", "a library's remark"]
    terminal = capsys.readouterr().out
    assert "warning: damaged cache entry x" in terminal and "a library's remark" not in terminal


def test_a_running_cell_prints_its_progress_between_start_and_end():
    console, summary = Lines(), RunSummary()
    lines = CellLines(console, summary, ["a", "b"])
    figures = ProgressFigures(step=120, total_steps=900, tokens_per_s=5432.4, eta_s=725.0)
    report = CellReport(PROGRESS, figures.metrics(), step=120)
    lines.on_progress("a", report)  # not started (or already ended): nothing
    lines.on_trial_start(0, [], trial("a"))
    lines.on_progress("a", report)
    lines.on_trial_complete(0, [], trial("a"))
    lines.on_progress("a", report)  # a late report after the end: nothing
    # trial("a") has 2 epochs: 450 steps each
    assert console.lines[1] == "[1/2] a: epoch 1/2: step 120/450, cell 120/900 (13%): 5432 tokens/s, ETA 12m05s"
    assert len(console.lines) == 3 and "finished" in console.lines[2]


def test_a_progress_line_places_the_step_in_its_epoch():
    at = [ProgressFigures(step=s, total_steps=900, tokens_per_s=10.0, eta_s=60.0) for s in (1, 300, 301, 900)]
    assert [progress_text(f, epochs=3).split(":")[0] for f in at] == ["epoch 1/3", "epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert progress_text(at[2], epochs=3) == "epoch 2/3: step 1/300, cell 301/900 (33%): 10 tokens/s, ETA 1m00s"
    assert progress_text(at[2]) == "step 301/900 (33%): 10 tokens/s, ETA 1m00s"  # epochs unknown: the cell's step


def test_the_heartbeat_says_what_the_run_does_until_stopped_and_not_after():
    console = Lines()
    ticks = itertools.chain([100.0, 115.0, 130.0], itertools.repeat(145.0))  # the heartbeat's clock: 15 s a line
    beat = Heartbeat(console, interval_s=0.001, clock=lambda: next(ticks))
    beat.doing = "starting Ray"
    _wait_for(lambda: len(console.lines) >= 2)
    beat.stop()
    printed = list(console.lines)
    assert printed[:2] == ["still starting Ray (15 s)", "still starting Ray (30 s)"]
    assert not beat._thread.is_alive() and console.lines == printed  # stopped: no line after stop() returned


def test_the_first_trial_start_stops_the_consoles_heartbeat():
    console = Lines()
    console.heartbeat("preparing the cells' data")
    running = console._heartbeat
    assert running is not None and running._thread.is_alive()
    console.heartbeat("starting Ray")  # the same heartbeat, now saying something else
    assert console._heartbeat is running and running.doing == "starting Ray"
    CellLines(console, RunSummary(), ["a"]).on_trial_start(0, [], trial("a"))
    assert console._heartbeat is None and not running._thread.is_alive()
    assert console.lines == ["[1/1] a: started"]  # (15 s had not passed: no heartbeat line)
    console.stop_heartbeat()  # again, at the run's end: nothing to stop


def _wait_for(condition, limit_s=10.0):
    import time

    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the heartbeat printed nothing"
        time.sleep(0.01)
