#!/usr/bin/env bash
# Issue 15, part 2: the oldest real toolchain the package registries give. leda-cm's MSRV
# (1.75) cannot be installed here; Debian 13 (trixie) ships rustc/cargo 1.85. In a minimal
# trixie root (debootstrap --variant=minbase plus Debian's rustc, cargo, protoc and C
# toolchain; cached under target/roots/trixie, each run in a throw-away overlay) that
# toolchain, not rustup's, compiles the crate with the repository's Cargo.lock as it is
# (--locked) and runs the unit tests beside the code (`cargo test --lib --bins`; the
# integration tests under tests/*.rs need the harness). Fails on any failure. Needs root.
set -euo pipefail
# shellcheck source=tests/roots/lib.sh
. "$(dirname "$0")/lib.sh"
roots_require_root

t0=$SECONDS
# ca-certificates: Debian's cargo fetches crates over HTTPS with the system's CA store.
roots_make trixie trixie rustc cargo protobuf-compiler gcc libc6-dev ca-certificates
t1=$SECONDS

roots_overlay "$ROOT"
# CARGO_HOME shared with the host (downloaded crates, under cargo's own lock); no rustup: the
# root's PATH has only its own /usr/bin, and RUSTC names Debian's compiler.
roots_bind "$(roots_cargo_home)" /opt/cargo
roots_bind "$ROOTS_REPO" /src ro
# No debuginfo: it does not change what the compiler accepts, and costs minutes here.
ROOTS_ENV=(CARGO_HOME=/opt/cargo RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=/build/target
    CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" CARGO_PROFILE_DEV_DEBUG=0)
# shellcheck disable=SC2016 # expanded in the root
roots_chroot bash -c '
    set -e
    [ "$(command -v cargo)" = /usr/bin/cargo ] || { echo "cargo is not Debian'\''s: $(command -v cargo)" >&2; exit 1; }
    echo "[roots] in the root: $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "[roots] toolchain: $(rustc --version) (rustc $(dpkg-query -W -f="\${Version}" rustc)), $(cargo --version) (cargo $(dpkg-query -W -f="\${Version}" cargo)), $(protoc --version)"
' >&2 || rdie "Debian's toolchain is not usable in the trixie root"

targets=(--bins)
[ ! -f "$ROOTS_REPO/src/lib.rs" ] || targets=(--lib --bins)
echo "== Debian 13 toolchain: cargo test --locked ${targets[*]}"
roots_chroot bash -c 'cd /src && exec cargo test --locked "$@"' cargo "${targets[@]}" ||
    rdie "cargo test --locked ${targets[*]} with Debian 13's rustc/cargo failed"
t2=$SECONDS
echo "== Debian 13 toolchain: passed; root $((t1 - t0)) s, build and unit tests $((t2 - t1)) s, total $((t2 - t0)) s"
