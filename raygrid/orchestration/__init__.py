"""Ray: the grid as Tune trials of Train workers, placement on the cluster, faults and locks (the only `ray` importer)."""
