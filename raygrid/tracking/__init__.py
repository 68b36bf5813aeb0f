"""MLflow: parent and child runs, tags, lineage, skipping finished cells (the only `mlflow` importer)."""
