"""The C patch runtime on every board preset under QEMU (qemu-user for the Raspberry Pis,
bare-metal qemu-system-arm with semihosting for the Cortex-Ms), and the Cortex-M budgets."""

from __future__ import annotations

import pytest

from amc.compiler import runtime_build as rb

pytestmark = pytest.mark.cross


@pytest.mark.parametrize("target", ["rpi4", "rpi3", "cortex-m4", "cortex-m7"])
def test_suites_on_target(target):
    result = rb.test_runtime(target)
    assert result.ok, result.output[-3000:]
    s = result.suites
    assert s["crosscheck"]["cases"] >= 300 and s["crosscheck"]["failed"] == 0
    assert s["reject"]["failed"] == 0
    assert s["powercut"]["corrupted"] == 0 and s["rollback"]["bad"] == 0
    assert s["badblob"]["accepted"] == 0 and s["badblob"]["storage_changed"] == 0


def test_cortex_m4_apply_path_budget():
    """At most 4 KB of flash (SHA-256 included, no signature verifier) and at most 1 KB of RAM
    for the state plus the worst-case stack, beyond the caller's page and bucket buffers."""
    sizes = rb.build_runtime("cortex-m4").sizes
    assert sizes["libc_functions"] == []
    assert sizes["text_bytes"] + sizes["data_bytes"] <= 4096, sizes
    assert sizes["bss_bytes"] + sizes["state_bytes"] + sizes["max_stack_bytes"] <= 1024, sizes
