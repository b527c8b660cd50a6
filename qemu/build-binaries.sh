#!/usr/bin/env bash
# Static leda-cm binaries for x86_64 and aarch64 (Raspberry Pi 4, qemuarm64), and the aarch64
# unit tests under qemu-aarch64 user emulation.
#
#   qemu/build-binaries.sh [build] [--libc gnu|musl] [ARCH...]
#       release binaries (default: x86_64 aarch64, glibc static)
#   qemu/build-binaries.sh test [--libc gnu|musl] [ARCH] [-- CARGO_TEST_ARGS...]
#       `cargo test --lib` for ARCH (default aarch64), run under qemu-ARCH-static
#   qemu/build-binaries.sh env [--libc gnu|musl] ARCH    the environment it builds with
#   qemu/build-binaries.sh sizes                         the size table of what was built
#
# Output: target/binaries/leda-cm-<arch>-<libc> and target/binaries/sizes.txt.
#
# Routes (everything they need is installed from Debian by this script; musl also adds
# rustup's musl std and rust-src):
#
#  gnu (default): static glibc (`+crt-static`, static-pie). x86_64 is the native release
#    build (`cargo build --release`, .cargo/rustc-static adds +crt-static). aarch64 uses
#    Debian's rustc-web/cargo-web 1.96 with the arm64 std of the same version, extracted
#    (`apt-get download libstd-rust-web-dev:arm64`, `dpkg-deb -x`, not installed) into a
#    private sysroot under target/cross/, and gcc-aarch64-linux-gnu as the linker (its
#    libc6-dev-arm64-cross has libc.a). Stable flags only.
#  musl (the smallest binary): rustup's toolchain with its <arch>-unknown-linux-musl std
#    (self-contained crt objects, libc.a, libunwind.a) and rust-src; std is rebuilt with the
#    crate (`-Z build-std=std,panic_abort`, RUSTC_BOOTSTRAP=1, `optimize_for_size`, no
#    backtrace symboliser) and no unwind tables (`-C force-unwind-tables=no`), relative
#    relocations packed (musl >= 1.2.4 applies DT_RELR). C compiler and linker: cc natively,
#    gcc-aarch64-linux-gnu for aarch64.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
root=$PWD

cross=$root/target/cross
# shellcheck source=qemu/lib.sh
. "$root/qemu/lib.sh"

say() { printf '[cross] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

rustc_web_version() { dpkg-query -W -f='${Version}' rustc-web; }

install_for() { # install_for LIBC ARCH
    local libc=$1 arch=$2
    need_packages protobuf-compiler file qemu-user-static
    [ "$libc" = gnu ] && [ "$arch" = x86_64 ] && return 0 # rustup's cargo, native
    need_packages rustc-web cargo-web
    if [ "$libc" = gnu ]; then
        need_packages gcc-aarch64-linux-gnu libc6-dev-arm64-cross
        local ver sysroot
        ver=$(rustc_web_version)
        sysroot=$cross/sysroot-$ver
        if [ ! -f "$sysroot/done" ]; then
            say "extracting libstd-rust-web-dev:arm64 $ver into $sysroot"
            rm -rf "$sysroot"
            mkdir -p "$sysroot"
            local tmp
            tmp=$(mktemp -d "$cross/download.XXXXXX")
            QEMU_APT_ARCH=arm64 qemu_apt_update
            (cd "$tmp" && QEMU_APT_ARCH=arm64 qemu_apt download -q "libstd-rust-web-dev=$ver" >/dev/null 2>&1)
            dpkg-deb -x "$tmp"/libstd-rust-web-dev_*.deb "$sysroot"
            rm -rf "$tmp"
            [ -d "$sysroot/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib" ] ||
                die "libstd-rust-web-dev:arm64 has no aarch64-unknown-linux-gnu std"
            # Build scripts and proc-macros are host code: the host's std.
            ln -s /usr/lib/rustlib/x86_64-unknown-linux-gnu "$sysroot/usr/lib/rustlib/x86_64-unknown-linux-gnu"
            touch "$sysroot/done"
        fi
    else
        [ "$arch" = "$(uname -m)" ] || need_packages "gcc-${arch//_/-}-linux-gnu"
        rustup target list --installed | grep -qx "$arch-unknown-linux-musl" ||
            rustup target add "$arch-unknown-linux-musl"
        rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
    fi
}

triple() { # triple ARCH LIBC
    case $1 in
    x86_64 | amd64) echo "x86_64-unknown-linux-$2" ;;
    aarch64 | arm64) echo "aarch64-unknown-linux-$2" ;;
    *) die "unknown architecture $1 (x86_64 or aarch64)" ;;
    esac
}

# Exports the build environment for LIBC ARCH; prints nothing. CARGO is the cargo to run,
# BUILD_STD the extra flags.
setup_env() {
    local libc=$1 arch=$2 t T a
    t=$(triple "$arch" "$libc")
    a=${t%%-*}
    T=$(echo "$t" | tr 'a-z-' 'A-Z_')
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
    TRIPLE=$t
    BUILD_STD=()
    if [ "$libc" = gnu ] && [ "$a" = "$(uname -m)" ]; then
        CARGO=cargo # native: rustup's toolchain, .cargo/rustc-static makes it static
        export CARGO_TARGET_DIR=$root/target
        TRIPLE=
        return
    fi
    export CARGO_TARGET_DIR=$cross/target
    if [ "$libc" = gnu ]; then
        CARGO=/usr/bin/cargo
        export RUSTC=/usr/bin/rustc
        local cc=$a-linux-gnu-gcc
        export "CARGO_TARGET_${T}_LINKER=$cc" "CC_${t//-/_}=$cc" "AR_${t//-/_}=$a-linux-gnu-ar"
        export "CARGO_TARGET_${T}_RUSTFLAGS=-C target-feature=+crt-static --sysroot $cross/sysroot-$(rustc_web_version)/usr"
    else
        CARGO=cargo # rustup's, with its musl std and rust-src
        local cc=cc ar=ar
        [ "$a" = "$(uname -m)" ] || { cc=$a-linux-gnu-gcc; ar=$a-linux-gnu-ar; }
        export RUSTC_BOOTSTRAP=1
        export "CARGO_TARGET_${T}_LINKER=$cc" "CC_${t//-/_}=$cc" "AR_${t//-/_}=$ar"
        export "CARGO_TARGET_${T}_RUSTFLAGS=-C target-feature=+crt-static -C force-unwind-tables=no -C link-arg=-Wl,-z,pack-relative-relocs"
        BUILD_STD=(-Z "build-std=std,panic_abort" -Z build-std-features=optimize_for_size)
    fi
    if [ "$a" != "$(uname -m)" ]; then
        export "CARGO_TARGET_${T}_RUNNER=qemu-$a-static"
    fi
}

build() { # build LIBC ARCH...
    local libc=$1 arch out started secs src; shift
    mkdir -p target/binaries
    for arch in "$@"; do
        install_for "$libc" "$(uname_arch "$arch")"
        (
            setup_env "$libc" "$arch"
            say "building ${TRIPLE:-native $(uname -m) glibc} (release)"
            started=$SECONDS
            if [ -n "$TRIPLE" ]; then
                nice "$CARGO" build --release --locked --target "$TRIPLE" "${BUILD_STD[@]}"
                src=$CARGO_TARGET_DIR/$TRIPLE/release/leda-cm
            else
                nice "$CARGO" build --release --locked
                src=$CARGO_TARGET_DIR/release/leda-cm
            fi
            secs=$((SECONDS - started))
            out=target/binaries/leda-cm-$(uname_arch "$arch")-$libc
            cp "$src" "$out"
            # The log driver containerd's shims start, beside it (qemu/build-image.sh).
            cp "${src%/*}/leda-cm-logd" "target/binaries/leda-cm-logd-$(uname_arch "$arch")-$libc"
            say "$out: $(stat -c %s "$out") bytes, built in ${secs}s; $(file -b "$out" | cut -d, -f1-2,5-6)"
            case $(file -b "$out") in
            *"statically linked"* | *"static-pie linked"*) ;;
            *) die "$out is not statically linked" ;;
            esac
        )
    done
    sizes
}

uname_arch() {
    case $1 in
    x86_64 | amd64) echo x86_64 ;;
    aarch64 | arm64) echo aarch64 ;;
    *) die "unknown architecture $1" ;;
    esac
}

sizes() {
    local f
    mkdir -p target/binaries
    for f in target/binaries/leda-cm-*; do
        [ -f "$f" ] || continue
        printf '%-36s %9s bytes  %s\n' "$f" "$(stat -c %s "$f")" "$(file -b "$f" | cut -d, -f1-2)"
    done | tee target/binaries/sizes.txt
}

unit_tests() { # unit_tests LIBC ARCH [ARGS...]
    local libc=$1 arch=$2 started runner; shift 2
    install_for "$libc" "$(uname_arch "$arch")"
    setup_env "$libc" "$arch"
    [ -n "$TRIPLE" ] || die "unit tests for the native build: cargo test --lib"
    runner=native
    [ "${TRIPLE%%-*}" != "$(uname -m)" ] && runner="qemu-${TRIPLE%%-*}-static user emulation"
    say "cargo test --lib --target $TRIPLE (runner: $runner)"
    started=$SECONDS
    if ((${#BUILD_STD[@]})); then
        # The test harness needs unwinding: rustup's prebuilt musl std, unwind tables kept.
        local T
        T=$(echo "$TRIPLE" | tr 'a-z-' 'A-Z_')
        unset RUSTC_BOOTSTRAP
        export "CARGO_TARGET_${T}_RUSTFLAGS=-C target-feature=+crt-static"
    fi
    nice "$CARGO" test --locked --lib --target "$TRIPLE" "$@"
    say "unit tests for $TRIPLE passed in $((SECONDS - started))s"
}

action=build
case ${1:-} in build | test | env | sizes) action=$1; shift ;; esac
libc=gnu
if [ "${1:-}" = --libc ]; then libc=${2:?--libc gnu|musl}; shift 2; fi
case $libc in gnu | musl) ;; *) die "--libc gnu or musl" ;; esac

case $action in
build)
    (($#)) || set -- x86_64 aarch64
    build "$libc" "$@"
    ;;
test)
    arch=aarch64
    if (($#)) && [ "$1" != -- ]; then arch=$1; shift; fi
    [ "${1:-}" = -- ] && shift
    unit_tests "$libc" "$arch" "$@"
    ;;
env)
    setup_env "$libc" "${1:?usage: env [--libc L] ARCH}"
    echo "CARGO=$CARGO TRIPLE=$TRIPLE BUILD_STD=${BUILD_STD[*]}"
    env | grep -E '^(RUSTC|RUSTC_BOOTSTRAP|CARGO_TARGET_|CC_|AR_)' | sort
    ;;
sizes) sizes ;;
esac
