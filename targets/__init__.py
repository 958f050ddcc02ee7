"""amc.targets: board presets, the backend registry (lowering, runners, inspection), toolchains and QEMU."""
