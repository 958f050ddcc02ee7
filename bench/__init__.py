"""amc.bench: benchmarks that recompute the tables of docs/benchmarks.md."""
