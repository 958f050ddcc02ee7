"""amc.common: what every layer may import: the error family, atomic writes, the progress callback, where builds go."""
