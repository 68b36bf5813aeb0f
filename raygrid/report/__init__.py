"""From runs to what researchers publish: tables, statistics, plots, published-figure comparison."""
