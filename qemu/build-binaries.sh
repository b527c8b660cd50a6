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
# Routes (both work on a fresh Debian 12 machine without rustup downloads; everything they
# need is installed from Debian and PyPI by this script):
#
#  gnu (default): static glibc (`+crt-static`, static-pie). x86_64 is the native release
#    build (`cargo build --release`, .cargo/rustc-static adds +crt-static). aarch64 uses
#    Debian's rustc-web/cargo-web 1.96 with the arm64 std of the same version, extracted
#    (`apt-get download libstd-rust-web-dev:arm64`, `dpkg-deb -x`, not installed) into a
#    private sysroot under target/cross/, and gcc-aarch64-linux-gnu as the linker (its
#    libc6-dev-arm64-cross has libc.a). Stable flags only.
#  musl: rust-web-src + `-Z build-std` (RUSTC_BOOTSTRAP=1) with `zig cc` (PyPI ziglang,
#    installed under target/cross/) as linker and C compiler.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
root=$PWD

ZIG_VERSION=0.14.1
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
        need_packages rust-web-src
        if [ ! -x "$cross/zig/ziglang/zig" ] || [ "$(cat "$cross/zig/version" 2>/dev/null)" != "$ZIG_VERSION" ]; then
            say "installing ziglang $ZIG_VERSION (PyPI) into $cross/zig"
            rm -rf "$cross/zig"
            python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
                --target "$cross/zig" "ziglang==$ZIG_VERSION"
            echo "$ZIG_VERSION" >"$cross/zig/version"
        fi
    fi
}

triple() { # triple ARCH LIBC
    case $1 in
    x86_64 | amd64) echo "x86_64-unknown-linux-$2" ;;
    aarch64 | arm64) echo "aarch64-unknown-linux-$2" ;;
    *) die "unknown architecture $1 (x86_64 or aarch64)" ;;
    esac
}

# zig cc for <arch>-linux-musl as linker and C compiler; rustc and cc-rs pass a few flags
# zig's clang driver does not take, dropped here.
zig_wrappers() {
    local arch=$1 w=$cross/bin/zigcc-$1
    mkdir -p "$cross/bin"
    cat >"$w.tmp" <<EOF
#!/usr/bin/env bash
args=()
for a in "\$@"; do
    case \$a in
    --target=* | -Wl,--no-undefined-version) ;;
    *) args+=("\$a") ;;
    esac
done
export ZIG_GLOBAL_CACHE_DIR="$cross/zig-cache" ZIG_LOCAL_CACHE_DIR="$cross/zig-cache"
exec "$cross/zig/ziglang/zig" cc -target $arch-linux-musl "\${args[@]}"
EOF
    printf '#!/bin/sh\nexec "%s" ar "$@"\n' "$cross/zig/ziglang/zig" >"$cross/bin/zigar"
    chmod +x "$w.tmp" "$cross/bin/zigar"
    mv "$w.tmp" "$w"
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
    CARGO=/usr/bin/cargo
    export RUSTC=/usr/bin/rustc
    export CARGO_TARGET_DIR=$cross/target
    if [ "$libc" = gnu ]; then
        local cc=$a-linux-gnu-gcc
        export "CARGO_TARGET_${T}_LINKER=$cc" "CC_${t//-/_}=$cc" "AR_${t//-/_}=$a-linux-gnu-ar"
        export "CARGO_TARGET_${T}_RUSTFLAGS=-C target-feature=+crt-static --sysroot $cross/sysroot-$(rustc_web_version)/usr"
    else
        zig_wrappers "$a"
        export RUSTC_BOOTSTRAP=1
        export "CARGO_TARGET_${T}_LINKER=$cross/bin/zigcc-$a" "CC_${t//-/_}=$cross/bin/zigcc-$a" \
            "AR_${t//-/_}=$cross/bin/zigar"
        # zig brings the C runtime, so not rustc's own copy.
        export "CARGO_TARGET_${T}_RUSTFLAGS=-C target-feature=+crt-static -C link-self-contained=no"
        BUILD_STD=(-Z "build-std=std,panic_abort")
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
    local std=()
    ((${#BUILD_STD[@]})) && std=(-Z build-std)
    nice "$CARGO" test --locked --lib --target "$TRIPLE" "${std[@]}" "$@"
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
