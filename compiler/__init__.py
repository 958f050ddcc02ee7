"""amc.compiler: the pipeline from checkpoint to bundle and patch blob, and the CLI."""
