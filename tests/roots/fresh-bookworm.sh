#!/usr/bin/env bash
# Issue 15, part 4: the README works on a fresh Debian 12 machine. In a clean minimal Debian 12
# root (debootstrap --variant=minbase, cached under target/roots/bookworm, each run in a
# throw-away overlay on top of it) that has none of this machine's hand-installed packages,
# with the host's Rust toolchain bind-mounted: the harness's package installation (what
# .ci/run and tests/run-all.sh install) and then `cargo build --release`. Fails if either
# fails. Needs root.
set -euo pipefail
# shellcheck source=tests/roots/lib.sh
. "$(dirname "$0")/lib.sh"
roots_require_root
command -v rustup >/dev/null || rdie "rustup is missing: the root borrows the host's Rust toolchain"

t0=$SECONDS
# The root is minbase plus ca-certificates, which stand in for "a machine with a Rust
# toolchain": rustup is installed over HTTPS, and cargo fetches crates over it.
roots_make bookworm bookworm ca-certificates
t1=$SECONDS

roots_overlay "$ROOT"
rustup_home=$(rustup show home)
cargo_home=$(roots_cargo_home)
# The toolchain (rustup's home read-only; CARGO_HOME whole: its bin/ proxies and the
# downloaded crates, shared under cargo's own lock), the repository read-only at /src.
roots_bind "$rustup_home" /opt/rustup ro
roots_bind "$cargo_home" /opt/cargo
roots_bind "$ROOTS_REPO" /src ro
ROOTS_ENV=(RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo RUSTUP_AUTO_INSTALL=0
    PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    CARGO_TARGET_DIR=/build/target CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}")
[ -z "${RUSTUP_TOOLCHAIN:-}" ] || ROOTS_ENV+=(RUSTUP_TOOLCHAIN="$RUSTUP_TOOLCHAIN")
# shellcheck disable=SC2016 # expanded in the root
roots_chroot bash -c 'echo "[roots] in the root: $(. /etc/os-release; echo "$PRETTY_NAME"), $(dpkg-query -W -f=. | wc -c) packages; $(rustc --version); $(cargo --version)"'

echo "== fresh Debian 12: the harness's package installation (harness_install_packages binutils)"
roots_chroot bash -c 'cd /src && . tests/harness/lib.sh && harness_install_packages binutils' ||
    rdie "the harness's package installation failed in a fresh Debian 12 root"
t2=$SECONDS

echo "== fresh Debian 12: cargo build --release"
if ! roots_chroot bash -c 'cd /src && cargo build --release --locked --quiet'; then
    rdie "cargo build --release failed in a fresh Debian 12 root (after the harness's packages)"
fi
roots_chroot file -b /build/target/release/leda-cm | sed 's/^/[roots] release binary: /' >&2
t3=$SECONDS
echo "== fresh Debian 12: passed; root $((t1 - t0)) s, packages $((t2 - t1)) s, release build $((t3 - t2)) s, total $((t3 - t0)) s"
