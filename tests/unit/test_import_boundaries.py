"""ray is imported by the orchestration modules only, mlflow by tracking only."""
import subprocess
import sys

PURE = ["raygrid.config", "raygrid.grid", "raygrid.attention", "raygrid.model", "raygrid.data.sources",
        "raygrid.data.splits", "raygrid.data.cache", "raygrid.data.batching", "raygrid.data.mlm_text",
        "raygrid.data.stats", "raygrid.data.hyperpartisan_hub", "raygrid.baseline", "raygrid.train_loop",
        "raygrid.report", "raygrid.metrics", "raygrid.cli", "raygrid.objectives", "raygrid.stages",
        "raygrid.data.mlm_data", "raygrid.data.storage", "raygrid.positions", "raygrid.cost", "raygrid.plots",
        "raygrid.render", "raygrid.cost_data", "raygrid.preflight", "raygrid.run_lock", "raygrid.interrupts",
        "raygrid.prune", "raygrid.data.verify", "raygrid.data.length_grouping", "raygrid.table_loaders",
        "raygrid.cell_model", "raygrid.bench_padding", "raygrid.bench_loop", "raygrid.placement"]


def test_pure_modules_import_neither_ray_nor_mlflow():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in PURE) +
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
