"""ray is imported by the orchestration modules only, mlflow by tracking only."""
import subprocess
import sys

PURE = ["raygrid.spec.config", "raygrid.spec.grid", "raygrid.attention", "raygrid.model.encoder", "raygrid.data.sources",
        "raygrid.data.splits", "raygrid.data.cache", "raygrid.data.batching", "raygrid.data.mlm_text",
        "raygrid.data.stats", "raygrid.data.hyperpartisan_hub", "raygrid.training.baseline", "raygrid.training.train_loop",
        "raygrid.report.tables", "raygrid.training.metrics", "raygrid.cli", "raygrid.training.objectives", "raygrid.spec.stages",
        "raygrid.data.mlm_data", "raygrid.data.storage", "raygrid.model.positions", "raygrid.cost.estimate", "raygrid.report.plots",
        "raygrid.report.render", "raygrid.cost.sizes", "raygrid.orchestration.preflight", "raygrid.orchestration.run_lock", "raygrid.orchestration.interrupts",
        "raygrid.orchestration.prune", "raygrid.data.verify", "raygrid.data.stream_batches", "raygrid.training.loaders",
        "raygrid.training.cell_model", "raygrid.bench.padding", "raygrid.bench.loop", "raygrid.orchestration.placement"]


def test_pure_modules_import_neither_ray_nor_mlflow():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in PURE) +
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
