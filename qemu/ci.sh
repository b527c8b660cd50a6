#!/usr/bin/env bash
# Issue 10's part of `bash tests/run-all.sh` (and so of .ci/run): the aarch64 unit tests
# under qemu-aarch64 user emulation, then the x86_64 QEMU scenarios, each timed.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
echo "== aarch64 unit tests (cargo test --lib, qemu-aarch64-static runner)"
bash qemu/build-binaries.sh test aarch64
t1=$SECONDS
echo "== QEMU scenarios (x86_64 image under TCG)"
bash qemu/test.sh --arch x86_64
t2=$SECONDS
echo "== cross + QEMU timings: aarch64 unit tests $((t1 - t0)) s, QEMU scenarios $((t2 - t1)) s" \
    "(budget 1200 s), together $((t2 - t0)) s"
if ((t2 - t1 > 1200)); then
    echo "warning: the QEMU scenarios took longer than their 20-minute budget" >&2
fi
