"""`plan`'s estimate: tokens per cell, FLOPs and GPU-hours."""
