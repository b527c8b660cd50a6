#!/usr/bin/env bash
# Runs every test: the unit tests of the pure core (beside the code) and the integration
# tests (the real binary against a real containerd, mosquitto and OCI registries started by
# tests/harness/run on loopback). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/harness/lib.sh
. tests/harness/lib.sh
harness_install_packages
# fault-injection: the test-only hooks (e.g. the watchdog test's main-loop hang).
# --no-fail-fast: every test binary runs, so one failure does not hide the others.
tests/harness/run -- cargo test --features fault-injection --no-fail-fast "$@"

# Cross build and QEMU (qemu/): aarch64 unit tests under user emulation, x86_64 QEMU scenarios.
bash qemu/ci.sh
