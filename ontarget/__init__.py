"""amc.ontarget: run bundles and patches on emulated boards (qemu-user, bare-metal Cortex-M) and compare with the host."""
