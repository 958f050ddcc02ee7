"""amc.runtime: the host side of the C patch runtime in device/runtime: CMake builds for each board, size and
stack analysis, test fixtures, the fuzzer, and applying blobs with amc-patch."""
