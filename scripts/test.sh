#!/usr/bin/env bash
# Sets up, builds and runs every test (unit + end-to-end against the real services).
# Usage: scripts/test.sh [ctest args…]     PAYLAB_PRESET=debug|asan|release (default asan)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup
preset=${PAYLAB_PRESET:-asan}
jobs=$(nproc 2>/dev/null || echo 2)

echo "== configure ($preset)"
cmake --preset "$preset" -DPAYLAB_REQUIRE_NODE_TESTS=ON >/dev/null
echo "== build"
cmake --build --preset "$preset" -j"$jobs"
echo "== style"
scripts/check-style
echo "== tests"
# LeakSanitizer runs at every clean exit of a service; abort loudly on any finding.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --preset "$preset" -j"$jobs" --timeout 600 "$@"
