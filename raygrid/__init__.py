"""raygrid: experiment grids on Ray Tune + Ray Train, tracked in MLflow."""

__version__ = "0.1.0"
