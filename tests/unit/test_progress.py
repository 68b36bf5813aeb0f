"""In-epoch progress: the figures (tokens/s, ETA), the time-based throttle, and fit's hook."""
import pytest
import torch

from raygrid.model.encoder import build_classifier
from raygrid.training import metric_names as M
from raygrid.training.objectives import Classification
from raygrid.training.progress import ProgressFigures, ProgressThrottle, duration
from raygrid.training.train_loop import fit
from tests.unit.test_train_loop import _setup


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_figures_are_tokens_per_second_and_mean_step_time_times_steps_left():
    figures = ProgressFigures.of(step=30, total_steps=120, tokens=60_000, seconds=15.0)
    assert figures.tokens_per_s == 4000.0
    assert figures.eta_s == pytest.approx(0.5 * 90)  # 0.5 s a step so far, 90 steps left
    assert ProgressFigures.of(120, 120, 10, 2.0).eta_s == 0.0  # done
    assert ProgressFigures.of(0, 10, 0, 0.0) == ProgressFigures(0, 10, 0.0, 0.0)  # no division by zero
    assert ProgressFigures.from_metrics(figures.metrics()) == figures
    assert set(figures.metrics()) == set(M.PROGRESS_METRICS)


def test_the_throttle_emits_once_per_interval_of_its_clock():
    clock, emitted = FakeClock(), []
    throttle = ProgressThrottle(emitted.append, interval_s=30.0, clock=clock)
    for step in range(1, 8):  # a step every 10 s
        clock.now += 10.0
        throttle(step, 100, step * 1000, step * 10.0)
    assert [f.step for f in emitted] == [3, 6]  # at 30 s and 60 s after the start, not before
    assert emitted[0] == ProgressFigures.of(3, 100, 3000, 30.0)
    clock.now = 160.0 + 29.9  # the last line came at 160 (step 6)
    throttle(8, 100, 8000, 80.0)
    assert len(emitted) == 2  # 29.9 s since the last line: still quiet
    clock.now = 190.0
    throttle(9, 100, 9000, 90.0)
    assert [f.step for f in emitted] == [3, 6, 9]


def test_a_step_longer_than_the_interval_emits_at_every_step():
    clock, emitted = FakeClock(), []
    throttle = ProgressThrottle(emitted.append, interval_s=30.0, clock=clock)
    for step in range(1, 4):
        clock.now += 45.0
        throttle(step, 3, step, step * 45.0)
    assert [f.step for f in emitted] == [1, 2, 3]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (44.6, "45s"), (725, "12m05s"), (3600, "1h00m"),
                                           (3 * 3600 + 125, "3h02m")])
def test_durations_read_like_a_clock(seconds, text):
    assert duration(seconds) == text


def test_fit_calls_the_hook_after_every_step_with_the_cells_running_totals(tiny_checkpoint, tmp_path):
    cfg, data, loaders = _setup(tiny_checkpoint, tmp_path, optim={"epochs": 2})
    calls, finals = [], []
    fit(cfg, build_classifier(cfg, data.num_labels), loaders, Classification(data.num_labels), torch.device("cpu"),
        lambda m, s: finals.append(m) if s is None else None, on_progress=lambda *a: calls.append(a))
    total = 2 * loaders.steps_per_epoch
    assert [c[0] for c in calls] == list(range(1, total + 1))  # every step of both epochs, counted across them
    assert {c[1] for c in calls} == {total}
    tokens, seconds = [c[2] for c in calls], [c[3] for c in calls]
    assert tokens == sorted(tokens) and len(set(tokens)) == total and all(s > 0 for s in seconds)
    assert seconds == sorted(seconds)
    # at the last step the running totals are the cell's: its tokens/s figure is the final one
    assert tokens[-1] / seconds[-1] == pytest.approx(finals[0][M.TOKENS_PER_S], rel=0.05)
    # validation still due: none known in the first epoch; in the second, its own pass at the first one's time
    first, second = calls[:loaders.steps_per_epoch], calls[loaders.steps_per_epoch:]
    assert {c[4] for c in first} == {0.0} and len({c[4] for c in second}) == 1 and second[0][4] > 0
    assert second[0][4] <= finals[0][M.EVAL_TIME_S]  # (the final figure adds the second pass and the test split)


def test_the_eta_adds_the_validation_still_due():
    assert ProgressFigures.of(30, 120, 60_000, 15.0, evaluation_s=20.0).eta_s == 90 * 0.5 + 20.0
    assert ProgressFigures.of(120, 120, 10, 2.0, evaluation_s=3.0).eta_s == 3.0  # steps done, last validation due


def test_the_reports_tables_leave_the_progress_metrics_out():
    import pandas as pd

    from raygrid.report.cells import cells_table, cells_view

    runs = pd.DataFrame({"cell": ["a"], "status": ["FINISHED"], "metrics.test_f1_macro": [0.7],
                         **{f"metrics.{name}": [1.0] for name in M.PROGRESS_METRICS}})
    for table in (cells_table(runs), cells_view(runs)):
        assert "test_f1" in table and not [c for c in table.columns if "progress" in c]
