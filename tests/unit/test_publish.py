"""publish against a real (temporary) SQLite MLflow store: files written, numbers as logged, plots attached."""
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raygrid.report.publish import log_to_parent, mean_curve, publish
from raygrid.tracking.runs import TAG_STAGE, GridTracker, metric_history

PNG = b"\x89PNG\r\n\x1a\n"
GRID = "toy"


def finetune_config(kind, seed):
    return {"kind": "finetune", "data": {"dataset": "hyperpartisan"}, "seed": seed,
            "model": {"pooling": "cls", "n_freeze": 0, "p_drop": 0.1}, "attention": {"kind": kind}}


def mlm_config(mask, seed):
    return {"kind": "mlm", "data": {"dataset": "wikitext"}, "seed": seed, "model": {"pooling": "cls"},
            "attention": {"kind": "lsh", "num_hashes": 2, "mask_within_chunks": mask}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Stage `finetune`: softmax and lsh cells (2 seeds; lsh +0.05); stage `mlm`: LSH with and without the mask."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = GridTracker(uri, GRID)
    logged = {}
    for kind, delta, seconds in (("softmax", 0.0, 10.0), ("lsh", 0.05, 4.0)):
        for seed in (0, 1):
            name = f"finetune/attention={kind},seed={seed}"  # a staged grid's cell names start with the stage
            run = tracker.start_cell(name, {"attention": kind, "seed": str(seed)}, finetune_config(kind, seed))
            tracker.client.set_tag(run, TAG_STAGE, "finetune")
            for epoch in (0, 1):
                tracker.log_metrics(run, {"val_f1_macro": 0.5 + 0.1 * epoch, "train_loss": 0.7 - 0.1 * epoch}, epoch)
            logged[name] = 0.6 + 0.1 * seed + delta
            tracker.log_metrics(run, {"test_f1_macro": logged[name], "best_val_f1_macro": 0.6,
                                      "epoch_time_mean_s": seconds, "peak_gpu_mem_mb": 0.0,
                                      "peak_host_mem_mb": 100.0 * seconds}, 2)
            tracker.end_cell(run)
    for mask, loss in ((True, 4.0), (False, 5.0)):
        for seed in (0, 1):
            run = tracker.start_cell(f"mlm/mask={mask},seed={seed}", {"attention.mask_within_chunks": str(mask),
                                                                  "seed": str(seed)}, mlm_config(mask, seed))
            tracker.client.set_tag(run, TAG_STAGE, "mlm")
            for epoch in (0, 1, 2):
                tracker.log_metrics(run, {"train_loss": loss - epoch + seed, "val_loss": loss - epoch + 0.5}, epoch)
            tracker.log_metrics(run, {"final_val_loss": loss - 1.5, "epoch_time_mean_s": 3.0}, 3)
            tracker.end_cell(run)
    failed = tracker.start_cell("finetune/attention=favor,seed=0", {"attention": "favor", "seed": "0"},
                                finetune_config("favor", 0))
    tracker.end_cell(failed, error="CUDA out of memory")
    return uri, tracker.parent_id, logged


def test_publish_saves_every_table_and_figure(store, tmp_path):
    uri, parent, logged = store
    result = publish(uri, GRID, "tex", save=tmp_path)
    assert result.text.startswith(f"% grid {GRID}\n") and r"\begin{tabular}" in result.text
    names = {p.name for p in tmp_path.iterdir()}
    stems = ("cells", "test_f1-macro", "best_hyperparameters", "seeds", "attention_variants", "attention_vs_softmax")
    assert {f"{GRID}.{s}.csv" for s in stems} | {f"{GRID}.md", f"{GRID}.tex"} <= names
    figures = {f"{GRID}.{f}.png" for f in ("f1", "val_f1_macro", "train_loss", "val_loss", "lsh_mask",
                                            "pareto_time", "pareto_memory")}
    assert figures <= names and sorted(names) == sorted(p.name for p in result.files)
    assert all((tmp_path / f).read_bytes()[:8] == PNG for f in figures)
    md = (tmp_path / f"{GRID}.md").read_text()
    assert "### attention vs softmax" in md
    # the attention table as a researcher pastes it: F1 in %, seconds to 0.1, MiB as integers, numbers right
    assert "|  test_f1 (%) | final_val_loss | epoch_s_mean | gpu_MiB | host_MiB | cells |" in md
    assert "| softmax                       | hyperpartisan | 65.00 ± 7.07 |                |         10.0 |       0 " \
           "|    1,000 |     2 |" in md
    assert "| lsh(mask_within_chunks=True)  | wikitext      |              |          2.500 |          3.0 |" in md
    assert r"\caption{seeds (mean over seeds, Student-t 95 \% CI of the mean)}" in (tmp_path / f"{GRID}.tex").read_text()
    artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(parent, "plots")}
    assert {f"plots/{f}" for f in figures} <= artifacts


def test_saved_csv_numbers_are_the_logged_metrics(store, tmp_path):
    uri, _, logged = store
    publish(uri, GRID, "md", save=tmp_path)
    cells = pd.read_csv(tmp_path / f"{GRID}.cells.csv").set_index("cell")
    assert cells.loc["finetune/attention=favor,seed=0", "error"] == "CUDA out of memory"
    for name, score in logged.items():
        assert cells.loc[name, "test_f1"] == pytest.approx(score)
    assert cells.loc["mlm/mask=True,seed=0", "final_val_loss"] == pytest.approx(2.5)
    assert {"val_f1", "best_val_f1", "epoch_s_mean", "gpu_MiB"} <= set(cells.columns)  # the CSV keeps every column logged
    paired = pd.read_csv(tmp_path / f"{GRID}.attention_vs_softmax.csv").set_index("attention")
    assert paired.loc["lsh", "pairs"] == 2 and paired.loc["lsh", "mean_diff"] == pytest.approx(0.05)
    assert paired.loc["lsh", ["ci95_low", "ci95_high"]].tolist() == pytest.approx([0.05, 0.05])
    assert paired.loc["lsh", "epoch_time_ratio"] == pytest.approx(0.4)
    assert pd.isna(paired.loc["lsh", "gpu_mem_ratio"]) and paired.loc["lsh", "host_mem_ratio"] == pytest.approx(0.4)
    attention = pd.read_csv(tmp_path / f"{GRID}.attention_variants.csv").set_index(["stage", "attention"])
    assert attention.loc[("mlm", "lsh(mask_within_chunks=True)"), "final_val_loss"] == pytest.approx(2.5)
    assert attention.loc[("finetune", "lsh"), "epoch_s_mean"] == pytest.approx(4.0)
    seeds = pd.read_csv(tmp_path / f"{GRID}.seeds.csv")
    softmax = seeds[(seeds["attention"] == "softmax") & (seeds["metric"] == "test_f1")].iloc[0]
    assert softmax["seeds"] == 2 and softmax["mean"] == pytest.approx(0.65)


def test_the_whole_report_is_logged_to_the_parent_run(store, tmp_path, monkeypatch):
    uri, parent, _ = store
    monkeypatch.chdir(tmp_path)  # no save folder: nothing may be left behind here
    logged = log_to_parent(uri, GRID)
    client = MlflowClient(tracking_uri=uri)
    tables = {a.path for a in client.list_artifacts(parent, "report")}
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    assert {f"report/{GRID}.md", f"report/{GRID}.tex", f"report/{GRID}.cells.csv", f"report/{GRID}.seeds.csv"} <= tables
    assert {f"plots/{GRID}.f1.png", f"plots/{GRID}.lsh_mask.png"} <= plots and set(logged) == tables | plots
    with open(client.download_artifacts(parent, f"report/{GRID}.md", str(tmp_path))) as handle:
        publish(uri, GRID, "md", save=tmp_path / "again")
        assert handle.read() == (tmp_path / "again" / f"{GRID}.md").read_text()  # the same tables as `report --save`
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", f"{GRID}.md"]  # the download, nothing else


def test_publish_without_save_writes_nothing(store, tmp_path, monkeypatch):
    uri, _, _ = store
    monkeypatch.chdir(tmp_path)
    result = publish(uri, GRID, "csv")
    assert result.files == [] and result.text.startswith("# cells\ncell,status,")
    assert not list(tmp_path.iterdir())


def test_each_curve_is_fetched_from_mlflow_once(store, tmp_path, monkeypatch):
    import raygrid.report.publish

    calls = []

    def counting(uri, run_id, metric):
        calls.append((run_id, metric))
        return metric_history(uri, run_id, metric)

    monkeypatch.setattr(raygrid.report.publish, "metric_history", counting)
    result = publish(store[0], GRID, "md", save=tmp_path)
    assert (tmp_path / f"{GRID}.lsh_mask.png") in result.files  # its loss curves were also drawn per cell
    assert calls and len(calls) == len(set(calls))


def test_mean_curve_averages_each_step_over_the_curves_that_have_it():
    assert mean_curve([[(0, 1.0), (1, 3.0)], [(1, 5.0), (0, 2.0), (2, 7.0)]]) == [(0, 1.5), (1, 4.0), (2, 7.0)]
    assert mean_curve([[], []]) == []


def test_cli_report_tex_and_save(store, tmp_path, capsys, monkeypatch):
    from raygrid.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, _, _ = store
    folder = uri[len("sqlite:///"):].rsplit("/", 1)[0]  # the output folder holding mlflow.db
    assert main(["report", folder, "--format", "tex", "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"% grid {GRID}\n") and r"\caption{attention vs softmax" in out
    assert f"wrote {tmp_path / GRID}.tex" in out and (tmp_path / f"{GRID}.lsh_mask.png").exists()
