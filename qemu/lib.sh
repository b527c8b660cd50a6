# shellcheck shell=bash
# Building blocks of the QEMU image and its runner: host packages (QEMU from
# bookworm-backports through a private apt configuration), the Debian kernel, the cache.
#
# Sourced by qemu/build-image.sh, qemu/test.sh and qemu/run-device.sh. Caches live under
# $QEMU_CACHE (target/qemu-cache), keyed by package names and versions, never by the code
# under test.

QEMU_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QEMU_CACHE=${LEDA_QEMU_CACHE:-$QEMU_ROOT/target/qemu-cache}
QEMU_SUITE=bookworm
# The Debian archive and its security archive are the ones this machine's own apt
# configuration names (read at run time; tests/roots/lib.sh reads them), or LEDA_QEMU_MIRROR.
# shellcheck source=tests/roots/lib.sh
. "$QEMU_ROOT/tests/roots/lib.sh"
QEMU_MIRROR=${LEDA_QEMU_MIRROR:-$(roots_mirror)}
QEMU_SECURITY=$(roots_apt_entries | awk -v s="$QEMU_SUITE-security" '$2 == s {print $1; exit}')

# Host tools. qemu-system-* come from bookworm-backports (QEMU 10): bookworm's 7.2 conflicts
# with the qemu-utils 10 that some machines have preinstalled.
QEMU_HOST_PACKAGES=(debootstrap e2fsprogs cpio busybox-static kmod socat python3 zstd xz-utils
    mosquitto-clients docker-registry skopeo umoci apache2-utils file)
QEMU_BACKPORTS_PACKAGES=(qemu-system-x86 qemu-system-arm qemu-system-common qemu-system-data
    seabios)

qlog() { printf '[qemu] %s\n' "$*" >&2; }
qdie() { qlog "error: $*"; exit 1; }

qemu_arch() { # normalises x86_64/amd64/aarch64/arm64 to the Debian name
    case ${1:-x86_64} in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) qdie "unknown architecture $1 (x86_64 or aarch64)" ;;
    esac
}

# apt-get with a private configuration: the machine's sources plus bookworm-backports, or
# (QEMU_APT_ARCH=arm64) the arm64 archive, each with its own lists; /etc/apt is not changed.
qemu_apt() { qemu_apt_tool apt-get "$@"; }
qemu_apt_cache() { qemu_apt_tool apt-cache "$@"; }
qemu_apt_tool() {
    local tool=$1; shift
    local arch=${QEMU_APT_ARCH:-$(dpkg --print-architecture)}
    local d=$QEMU_CACHE/apt/$arch
    if [ ! -f "$d/sources.list.d/debian.sources" ]; then
        mkdir -p "$d/sources.list.d" "$d/lists/partial" "$d/archives/partial"
        cat >"$d/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $QEMU_MIRROR
Suites: $QEMU_SUITE $QEMU_SUITE-updates $QEMU_SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        if [ -n "$QEMU_SECURITY" ]; then
            cat >>"$d/sources.list.d/debian.sources" <<EOF

Types: deb
URIs: $QEMU_SECURITY
Suites: $QEMU_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        fi
    fi
    "$tool" -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$d/sources.list.d" \
        -o Dir::State::Lists="$d/lists" -o Dir::Cache::Archives="$d/archives" \
        -o APT::Architecture="$arch" -o APT::Architectures::="$arch" "$@"
}

qemu_apt_update() { # once per hour at most
    local arch=${QEMU_APT_ARCH:-$(dpkg --print-architecture)}
    local stamp=$QEMU_CACHE/apt/$arch/updated
    if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +60)" ]; then
        qemu_apt update -qq >/dev/null 2>&1 || qemu_apt update -qq
        touch "$stamp"
    fi
}

# shellcheck disable=SC2120 # extra package names are optional
qemu_install_host_packages() {
    local missing=() p
    for p in "${QEMU_HOST_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        qlog "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-system-aarch64 >/dev/null; then
        qlog "installing QEMU from $QEMU_SUITE-backports: ${QEMU_BACKPORTS_PACKAGES[*]}"
        qemu_apt_update
        local names=()
        for p in "${QEMU_BACKPORTS_PACKAGES[@]}"; do names+=("$p/$QEMU_SUITE-backports"); done
        DEBIAN_FRONTEND=noninteractive qemu_apt install -y -qq --no-install-recommends "${names[@]}" >/dev/null
    fi
}

# The candidate version of PACKAGE in the private lists of QEMU_APT_ARCH.
qemu_pkg_version() {
    qemu_apt_cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'
}

# The kernel image package the metapackage linux-image-ARCH points to, e.g.
# linux-image-6.1.0-40-amd64.
qemu_kernel_package() {
    local arch=$1 ver
    ver=$(QEMU_APT_ARCH=$arch qemu_pkg_version "linux-image-$arch")
    QEMU_APT_ARCH=$arch qemu_apt_cache show "linux-image-$arch=$ver" 2>/dev/null |
        sed -n 's/^Depends: .*\(linux-image-[0-9][^ ,]*-'"$arch"'\).*/\1/p' | head -1
}

# qemu_fetch_kernel ARCH: downloads and unpacks Debian's kernel into the cache (once per
# package version) and prints the directory: boot/vmlinux (x86_64, unpacked from bzImage) or
# boot/Image (arm64), lib/modules/<release>/ with modules.dep, and `release`.
qemu_fetch_kernel() {
    local arch=$1 pkg ver dir tmp deb
    QEMU_APT_ARCH=$arch qemu_apt_update
    pkg=$(qemu_kernel_package "$arch")
    [ -n "$pkg" ] || qdie "cannot find the kernel package behind linux-image-$arch"
    ver=$(QEMU_APT_ARCH=$arch qemu_pkg_version "$pkg")
    dir=$QEMU_CACHE/kernel/$pkg-$ver
    if [ ! -f "$dir/done" ]; then
        qlog "downloading $pkg $ver"
        rm -rf "$dir"
        tmp=$(mktemp -d "$QEMU_CACHE/kernel.XXXXXX")
        (cd "$tmp" && QEMU_APT_ARCH=$arch qemu_apt download "$pkg=$ver" >/dev/null)
        deb=$(ls "$tmp"/*.deb)
        dpkg-deb -x "$deb" "$tmp/x" || qdie "cannot unpack $deb"
        mkdir -p "$dir/boot" "$dir/lib"
        local release
        release=$(ls "$tmp/x/lib/modules")
        echo "$release" >"$dir/release"
        mv "$tmp/x/lib/modules" "$dir/lib/modules"
        cp "$tmp/x/boot/config-$release" "$dir/boot/config"
        if [ "$arch" = amd64 ]; then
            python3 "$QEMU_ROOT/qemu/extract-vmlinux.py" "$tmp/x/boot/vmlinuz-$release" "$dir/boot/vmlinux" ||
                qdie "cannot unpack the kernel image"
        else
            # arm64's vmlinuz is a gzip-compressed Image; QEMU -M virt boots the Image directly.
            gzip -dc "$tmp/x/boot/vmlinuz-$release" >"$dir/boot/Image" 2>/dev/null ||
                cp "$tmp/x/boot/vmlinuz-$release" "$dir/boot/Image"
        fi
        # Modules uncompressed (busybox insmod and the guest's kmod both take them so).
        find "$dir/lib/modules" -name '*.ko.xz' -exec xz -d {} +
        find "$dir/lib/modules" -name '*.ko.zst' -exec zstd -q -d --rm {} +
        depmod -b "$dir" "$release" || qdie "depmod failed"
        rm -rf "$tmp"
        touch "$dir/done"
    fi
    echo "$dir"
}

# qemu_build_image DIR TAG ARCH BUSYBOX [CMD...]: like tests/harness/lib.sh's
# harness_build_image, for another architecture's static busybox (its applet list is read
# through qemu-user when it is foreign).
qemu_build_image() {
    local d=$1 tag=$2 arch=$3 bb=$4; shift 4
    local bundle=$d/bundle-$tag applet runner=()
    [ "$arch" = "$(dpkg --print-architecture)" ] || runner=("qemu-$(uname_of "$arch")-static")
    [ -d "$d/oci" ] || umoci init --layout "$d/oci"
    umoci new --image "$d/oci:$tag"
    umoci unpack --image "$d/oci:$tag" "$bundle" >/dev/null
    mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/etc" "$bundle/rootfs/tmp" "$bundle/rootfs/proc" \
        "$bundle/rootfs/sys" "$bundle/rootfs/dev" "$bundle/rootfs/var/www"
    cp "$bb" "$bundle/rootfs/bin/busybox"
    for applet in $("${runner[@]}" "$bb" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$applet"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$bundle/rootfs/etc/passwd"
    echo "root:x:0:" >"$bundle/rootfs/etc/group"
    echo "leda-cm test image $tag" >"$bundle/rootfs/var/www/index.html"
    umoci repack --image "$d/oci:$tag" "$bundle" >/dev/null
    rm -rf "$bundle"
    local cmd=("$@") args=() c
    ((${#cmd[@]})) || cmd=(/bin/sh)
    for c in "${cmd[@]}"; do args+=(--config.cmd "$c"); done
    umoci config --image "$d/oci:$tag" --os linux --architecture "$arch" --config.env PATH=/bin "${args[@]}"
}

# qemu_push_test_images DIR ARCH REGISTRY_PORT: builds the busybox test images for ARCH and
# pushes them to the host registry: leda/busybox:1.0 and leda/service:1.0 (the images of
# recipes/demo), leda/busybox:2.0 (the update scenario's).
qemu_push_test_images() {
    local d=$1 a=$2 port=$3 bb
    mkdir -p "$d"
    local svc='trap "exit 0" TERM; while :; do sleep 1 & wait $!; done'
    if [ "$a" = "$(dpkg --print-architecture)" ]; then
        harness_build_image "$d" busybox "$a" /bin/sh >/dev/null
        harness_build_image "$d" service "$a" /bin/sh -c "$svc" >/dev/null
        harness_build_image "$d" busybox2 "$a" /bin/sh -c 'echo version 2; sleep 100000' >/dev/null
    else
        bb=$(qemu_busybox "$a")
        qemu_build_image "$d" busybox "$a" "$bb" /bin/sh >/dev/null
        qemu_build_image "$d" service "$a" "$bb" /bin/sh -c "$svc" >/dev/null
        qemu_build_image "$d" busybox2 "$a" "$bb" /bin/sh -c 'echo version 2; sleep 100000' >/dev/null
    fi
    harness_push "$d" busybox "127.0.0.1:$port/leda/busybox:1.0"
    harness_push "$d" service "127.0.0.1:$port/leda/service:1.0"
    harness_push "$d" busybox2 "127.0.0.1:$port/leda/busybox:2.0"
}

uname_of() { [ "$1" = arm64 ] && echo aarch64 || echo x86_64; }

# The static busybox of Debian's busybox-static for ARCH (the host's own for the host arch).
qemu_busybox() {
    local a=$1
    if [ "$a" = "$(dpkg --print-architecture)" ]; then
        echo /bin/busybox
        return
    fi
    local ver dir tmp
    QEMU_APT_ARCH=$a qemu_apt_update
    ver=$(QEMU_APT_ARCH=$a qemu_pkg_version busybox-static)
    dir=$QEMU_CACHE/busybox/$a-$ver
    if [ ! -x "$dir/bin/busybox" ]; then
        tmp=$(mktemp -d "$QEMU_CACHE/busybox.XXXXXX")
        (cd "$tmp" && QEMU_APT_ARCH=$a qemu_apt download -q "busybox-static=$ver" >/dev/null 2>&1)
        dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
        mkdir -p "$dir/bin"
        cp "$tmp/x/bin/busybox" "$dir/bin/busybox"
        rm -rf "$tmp"
    fi
    echo "$dir/bin/busybox"
}

# The leda-cm binary for the guest: the native release build for the host's architecture,
# qemu/build-binaries.sh's for another one. Builds it when needed.
qemu_guest_binary() {
    local a=$1
    if [ "$a" = "$(dpkg --print-architecture)" ]; then
        (cd "$QEMU_ROOT" && nice cargo build --release --locked --quiet) >&2
        echo "$QEMU_ROOT/target/release/leda-cm"
    else
        local b
        b=$QEMU_ROOT/target/binaries/leda-cm-$(uname_of "$a")-gnu
        [ -f "$b" ] || bash "$QEMU_ROOT/qemu/build-binaries.sh" build "$(uname_of "$a")" >&2
        echo "$b"
    fi
}
