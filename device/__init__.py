"""amc.device: what runs on a board, shipped as package data: the C patch runtime (runtime/), amc-runner (runner/),
the board Python for TFLite bundles (board/), boot units (boot/). Nothing here imports host code."""
