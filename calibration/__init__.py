"""amc.calibration: calibration audio and the per-step graph inputs gathered by streaming it."""
