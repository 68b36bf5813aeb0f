"""What a grid says: strict config models, YAML to cells, stages, `select:`, paths; no torch, Ray or MLflow."""
