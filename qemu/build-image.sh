#!/usr/bin/env bash
# The bootable test image of leda-cm, from Debian packages.
#
#   qemu/build-image.sh [--arch x86_64|aarch64] base
#       kernel, initramfs and debootstrap root (cached under target/qemu-cache/, keyed by the
#       package list and versions, never by the code under test); prints the cache paths
#   qemu/build-image.sh [--arch x86_64|aarch64] assemble --bin LEDA_CM_BINARY --out DIR
#       DIR/rootfs.ext4 (the root: the cached debootstrap root + qemu/guest/ + leda-cm, its
#       unit, config and the recipes/ manifests), DIR/data.img (blank data partition),
#       DIR/boot.env (kernel, initrd, command line for qemu/runner.py)
#
# The root is read-only at run time: QEMU opens it readonly=on and the initramfs mounts it ro.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/lib.sh"

# The root file system: Debian bookworm minbase plus what a Leda device runs around leda-cm.
# ca-certificates: leda-cm's registry client needs the system's CA store to start.
ROOTFS_PACKAGES=(systemd systemd-sysv udev dbus kmod iproute2 iptables procps ca-certificates
    containerd runc containernetworking-plugins mosquitto mosquitto-clients qemu-guest-agent)
# Bumped when the steps below change what the cached root holds.
ROOTFS_RECIPE=1
# Drivers loaded by the initramfs (with their dependencies, from modules.dep).
INITRAMFS_MODULES=(virtio_pci virtio_blk virtio_rng virtio_console crc32c_generic ext4 overlay
    i6300esb)
# Kernel modules copied into the root (the rest of the Debian kernel's 400 MB is hardware a
# virtual board does not have).
ROOTFS_MODULE_DIRS=(kernel/arch kernel/block kernel/crypto kernel/fs kernel/lib kernel/mm
    kernel/net kernel/virt kernel/drivers/virtio kernel/drivers/block kernel/drivers/char
    kernel/drivers/watchdog kernel/drivers/acpi kernel/drivers/input kernel/drivers/pci)

# The manifest set of recipes/ installed into the image, and the host registry's address as
# the guest sees it (qemu/runner.py's guestfwd).
MANIFEST_SET=${LEDA_QEMU_MANIFESTS:-demo}
GUEST_REGISTRY=10.0.2.100:5000

arch=amd64
while (($#)); do
    case $1 in
    --arch) arch=$(qemu_arch "$2"); shift 2 ;;
    *) break ;;
    esac
done
action=${1:-base}
(($#)) && shift

# --- kernel and initramfs ---------------------------------------------------------------
# Load order of the named modules and their dependencies, as paths below lib/modules/REL.
module_order() { # KERNEL_DIR NAME...
    local kdir=$1; shift
    python3 - "$kdir/lib/modules/$(cat "$kdir/release")/modules.dep" "$@" <<'PY'
import os, sys
deps = {}
for line in open(sys.argv[1]):
    path, _, rest = line.partition(":")
    deps[path] = rest.split()
by_name = {os.path.basename(p).split(".ko")[0].replace("-", "_"): p for p in deps}
order, seen = [], set()
def visit(p):
    if p in seen:
        return
    seen.add(p)
    for d in deps[p]:
        visit(d)
    order.append(p)
for name in sys.argv[2:]:
    if name in by_name:          # absent: built into the kernel
        visit(by_name[name])
print("\n".join(order))
PY
}

build_initramfs() { # KERNEL_DIR -> prints the path of the cpio.gz
    local kdir=$1 bb key out rel
    bb=$(qemu_busybox "$arch")
    rel=$(cat "$kdir/release")
    key=$( {
        echo "$kdir" "${INITRAMFS_MODULES[*]}"
        sha256sum "$bb" "$here/initramfs/init" | cut -d' ' -f1
    } | sha256sum | cut -c1-16)
    out=$QEMU_CACHE/$arch/initramfs-$key.cpio.gz
    if [ ! -f "$out" ]; then
        qlog "building the initramfs ($out)"
        local d m
        d=$(mktemp -d "$QEMU_CACHE/initramfs.XXXXXX")
        mkdir -p "$d/bin" "$d/dev" "$d/proc" "$d/sys" "$d/newroot" "$d/lib/modules"
        cp "$bb" "$d/bin/busybox"
        cp "$here/initramfs/init" "$d/init"
        module_order "$kdir" "${INITRAMFS_MODULES[@]}" >"$d/modules.order"
        while read -r m; do
            mkdir -p "$d/lib/modules/$(dirname "$m")"
            cp "$kdir/lib/modules/$rel/$m" "$d/lib/modules/$m"
        done <"$d/modules.order"
        mkdir -p "$(dirname "$out")"
        (cd "$d" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -6) >"$out.tmp"
        mv "$out.tmp" "$out"
        rm -rf "$d"
    fi
    echo "$out"
}

# --- root file system -------------------------------------------------------------------
rootfs_key() {
    {
        echo "$QEMU_SUITE $arch minbase recipe=$ROOTFS_RECIPE"
        dpkg-query -W -f='debootstrap ${Version}\n' debootstrap
        # The versions debootstrap installs: the release suite's.
        QEMU_APT_ARCH=$arch qemu_apt_cache madison "${ROOTFS_PACKAGES[@]}" |
            awk -F'|' -v s="$QEMU_SUITE/main" 'index($3, s) {gsub(/ /, ""); print $1 "=" $2}' | sort -u
    } | tee "$QEMU_CACHE/$arch/rootfs-key.txt.tmp" | sha256sum | cut -c1-16
}

build_rootfs() { # -> prints the path of the cached tarball
    local key out d
    mkdir -p "$QEMU_CACHE/$arch"
    QEMU_APT_ARCH=$arch qemu_apt_update
    key=$(rootfs_key)
    out=$QEMU_CACHE/$arch/rootfs-$key.tar
    if [ -f "$out" ]; then
        rm -f "$QEMU_CACHE/$arch/rootfs-key.txt.tmp"
        echo "$out"
        return
    fi
    mv "$QEMU_CACHE/$arch/rootfs-key.txt.tmp" "$out.packages"
    d=$QEMU_CACHE/$arch/rootfs.build
    rm -rf "$d"
    local inc started=$SECONDS
    inc=$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")
    if [ "$arch" = "$(dpkg --print-architecture)" ]; then
        qlog "debootstrap $QEMU_SUITE $arch (minbase + ${ROOTFS_PACKAGES[*]}), a few minutes"
        nice debootstrap --variant=minbase --arch="$arch" --include="$inc" \
            "$QEMU_SUITE" "$d" "$QEMU_MIRROR" >"$d.log" 2>&1 ||
            { tail -20 "$d.log" >&2; qdie "debootstrap failed (log: $d.log)"; }
    else
        qlog "debootstrap --foreign $QEMU_SUITE $arch (second stage in a QEMU guest), many minutes"
        nice debootstrap --foreign --variant=minbase --arch="$arch" --include="$inc" \
            "$QEMU_SUITE" "$d" "$QEMU_MIRROR" >"$d.log" 2>&1 ||
            { tail -20 "$d.log" >&2; qdie "debootstrap --foreign failed (log: $d.log)"; }
        second_stage_in_guest "$d"
    fi
    # Package caches and lists are not part of a device image.
    rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/lib/apt/lists/* "$d"/debootstrap
    : >"$d/etc/machine-id"
    tar --numeric-owner --xattrs -C "$d" -cpf "$out.tmp" .
    mv "$out.tmp" "$out"
    rm -rf "$d"
    # Roots of older package versions go.
    find "$QEMU_CACHE/$arch" -maxdepth 1 -name 'rootfs-*.tar*' ! -name "rootfs-$key.tar*" -delete
    qlog "root file system cached in $out ($((SECONDS - started)) s)"
    echo "$out"
}

# The second stage of a foreign debootstrap runs in an emulated guest of that architecture
# (binfmt_misc is not available here): the root is a writable disk, the guest runs
# `debootstrap --second-stage` as PID 1 and writes a tar of the result to a second disk.
second_stage_in_guest() {
    local d=$1 kdir initrd work
    kdir=$(qemu_fetch_kernel "$arch")
    initrd=$(build_initramfs "$kdir")
    work=$(mktemp -d "$QEMU_CACHE/$arch/stage2.XXXXXX")
    cat >"$d/leda-second-stage" <<'EOF'
#!/bin/sh
# PID 1 of the guest that runs debootstrap's second stage; powers the guest off at the end.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "leda-second-stage: start"
if /debootstrap/debootstrap --second-stage; then
    rm -f /leda-second-stage
    # The result as a tar on the second disk (the host reads the raw disk as a tar file).
    tar --numeric-owner --xattrs --one-file-system -C / -cpf /dev/vdb . && echo "leda-second-stage: ok"
else
    echo "leda-second-stage: failed"
    tail -30 /debootstrap/debootstrap.log
fi
sync
echo o >/proc/sysrq-trigger
sleep 60
EOF
    chmod +x "$d/leda-second-stage"
    local size
    size=$(($(du -sm "$d" | cut -f1) * 3 + 1024))
    mkfs.ext4 -q -F -L stage2 -d "$d" "$work/root.ext4" "${size}M" >/dev/null
    truncate -s "$((size * 2))M" "$work/out.tar"
    qlog "booting the $arch guest for the debootstrap second stage (log: $work/console.log)"
    nice python3 "$here/runner.py" oneshot --arch "$arch" --kernel "$kdir/boot/$(kernel_file)" \
        --initrd "$initrd" --append "console=$(console) panic=-1 root=/dev/vda leda.rootrw=1 leda.init=/leda-second-stage" \
        --disk "$work/root.ext4" --disk "$work/out.tar" --log "$work/console.log" \
        --timeout 5400 --expect "leda-second-stage: ok" ||
        qdie "the second stage failed (log: $work/console.log)"
    rm -rf "$d"
    mkdir -p "$d"
    tar --numeric-owner --xattrs -C "$d" -xpf "$work/out.tar"
    rm -rf "$work"
}

kernel_file() { [ "$arch" = amd64 ] && echo vmlinux || echo Image; }
console() { [ "$arch" = amd64 ] && echo ttyS0 || echo ttyAMA0; }

base() {
    qemu_install_host_packages
    KDIR=$(qemu_fetch_kernel "$arch")
    INITRD=$(build_initramfs "$KDIR")
    ROOTFS=$(build_rootfs)
}

# --- assemble ---------------------------------------------------------------------------
assemble() {
    local bin="" out=""
    while (($#)); do
        case $1 in
        --bin) bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) qdie "assemble: unknown argument $1" ;;
        esac
    done
    if [ -z "$bin" ] || [ ! -f "$bin" ]; then qdie "assemble: --bin LEDA_CM_BINARY is required"; fi
    [ -n "$out" ] || qdie "assemble: --out DIR is required"
    base
    local rel stage unit=$QEMU_ROOT/meta-leda-cm/recipes-containers/leda-cm/files/leda-cm.service
    rel=$(cat "$KDIR/release")
    mkdir -p "$out"
    stage=$out/rootfs.d
    rm -rf "$stage" "$out/rootfs.ext4" "$out/data.img"
    mkdir -p "$stage"
    tar --numeric-owner --xattrs -C "$stage" -xpf "$ROOTFS"
    cp -a "$here/guest/." "$stage/"
    chown -R 0:0 "$stage/etc"
    # Mount points of the read-only root.
    mkdir -p "$stage/data"
    # A test image: root logs in without a password (serial console, emergency shell).
    sed -i 's/^root:[^:]*:/root::/' "$stage/etc/shadow"
    # leda-cm at a stable path: containerd's shims start its log driver by this path.
    install -m 0755 "$bin" "$stage/usr/bin/leda-cm"
    # Its log driver (leda-cm-logd, one process per container), built beside it.
    local logd
    logd=$(dirname "$bin")/$(basename "$bin" | sed 's/^leda-cm/leda-cm-logd/')
    [ -f "$logd" ] || qdie "assemble: no $logd beside $bin"
    install -m 0755 "$logd" "$stage/usr/bin/leda-cm-logd"
    ln -sf leda-cm "$stage/usr/bin/container-management"
    ln -sf leda-cm "$stage/usr/bin/kanto-cm"
    install -m 0644 "$unit" "$stage/usr/lib/systemd/system/leda-cm.service"
    # The manifests leda-cm deploys at start (deployment.ctr_dir): a set of recipes/, its
    # images pulled from the host's registry (10.0.2.100:5000 in the guest) instead of the
    # device's localhost:5000.
    local f mdir=$stage/etc/container-management/containers
    mkdir -p "$mdir"
    [ -d "$QEMU_ROOT/recipes/$MANIFEST_SET" ] || qdie "no manifest set recipes/$MANIFEST_SET"
    for f in "$QEMU_ROOT/recipes/$MANIFEST_SET"/*.json; do
        [ -f "$f" ] || continue
        sed "s|\"localhost:5000/|\"$GUEST_REGISTRY/|g" "$f" >"$mdir/$(basename "$f")"
    done
    ls "$mdir"/*.json >/dev/null 2>&1 || qdie "recipes/$MANIFEST_SET has no *.json manifest"
    # The board's identity: fixed for this image (the root is read-only).
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$stage/etc/machine-id"
    echo >>"$stage/etc/machine-id"
    # Kernel modules (udev loads the rest of the drivers from here).
    local m
    for m in "${ROOTFS_MODULE_DIRS[@]}"; do
        [ -d "$KDIR/lib/modules/$rel/$m" ] || continue
        mkdir -p "$stage/usr/lib/modules/$rel/$m"
        cp -a "$KDIR/lib/modules/$rel/$m/." "$stage/usr/lib/modules/$rel/$m/"
    done
    mkdir -p "$stage/usr/lib/modules/$rel/kernel/drivers/net"
    cp "$KDIR/lib/modules/$rel/kernel/drivers/net/"*.ko "$stage/usr/lib/modules/$rel/kernel/drivers/net/"
    cp "$KDIR/lib/modules/$rel/"modules.{order,builtin,builtin.modinfo} "$stage/usr/lib/modules/$rel/" 2>/dev/null || true
    depmod -b "$stage" "$rel"
    systemctl --root="$stage" enable leda-cm.service systemd-networkd.service >/dev/null 2>&1
    systemctl --root="$stage" mask systemd-networkd-wait-online.service apt-daily.timer \
        apt-daily-upgrade.timer >/dev/null 2>&1
    # Read-only root: no writes at boot to these.
    rm -f "$stage/etc/resolv.conf.bak"
    local size
    size=$(($(du -sm "$stage" | cut -f1) * 115 / 100 + 64))
    mkfs.ext4 -q -F -L root -d "$stage" "$out/rootfs.ext4" "${size}M" >/dev/null
    rm -rf "$stage"
    truncate -s 4G "$out/data.img"
    mkfs.ext4 -q -F -L data "$out/data.img"
    sha256sum "$out/rootfs.ext4" | cut -d' ' -f1 >"$out/rootfs.sha256"
    local console
    console=$(console)
    cat >"$out/boot.env" <<EOF
ARCH=$arch
KERNEL=$KDIR/boot/$(kernel_file)
INITRD=$INITRD
APPEND="console=$console root=/dev/vda ro panic=-1 net.ifnames=0 systemd.journald.forward_to_console=1 systemd.show_status=1 loglevel=5"
KERNEL_RELEASE=$rel
LEDA_CM_BINARY=$(readlink -f "$bin")
EOF
    qlog "image in $out: rootfs.ext4 ${size} MB (sha256 $(cut -c1-12 "$out/rootfs.sha256")), data.img 4 GB sparse"
}

case $action in
base)
    base
    echo "KERNEL=$KDIR/boot/$(kernel_file)"
    echo "INITRD=$INITRD"
    echo "ROOTFS=$ROOTFS"
    ;;
assemble) assemble "$@" ;;
*) qdie "usage: qemu/build-image.sh [--arch ARCH] base | assemble --bin BIN --out DIR" ;;
esac
