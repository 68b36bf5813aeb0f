"""`raygrid bench ...`: attention kernels, padding, the bare loop against raygrid."""
