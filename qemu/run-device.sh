#!/usr/bin/env bash
# Boots the leda-cm QEMU image on this terminal: the QEMU way to "run a device".
#
#   qemu/run-device.sh [--arch x86_64|aarch64] [--bin LEDA_CM_BINARY] [--fresh]
#
# The serial console logs root in (about 30 s under TCG). `poweroff` in the guest ends
# it cleanly; Ctrl-A X kills QEMU (recent writes to the data disk may be lost). The data
# disk (target/qemu-device/<arch>/data.img) is kept between runs like a device's; --fresh
# starts from a blank one. On the host: MQTT on 127.0.0.1:${LEDA_QEMU_MQTT_PORT:-18830};
# the test images (leda/busybox:1.0 and :2.0, leda/service:1.0) are in a registry the guest
# reaches as 10.0.2.100:5000; the demo manifests of recipes/demo are deployed from it at the
# first boot. E.g.
#   kanto-cm create --name web --network host 10.0.2.100:5000/leda/busybox:1.0 httpd -f -p 8080
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/harness/lib.sh
. "$QEMU_ROOT/tests/harness/lib.sh"

arch=amd64 bin="" fresh=0
while (($#)); do
    case $1 in
    --arch) arch=$(qemu_arch "$2"); shift 2 ;;
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) qdie "usage: qemu/run-device.sh [--arch x86_64|aarch64] [--bin BINARY] [--fresh]" ;;
    esac
done
qemu_install_host_packages
[ -n "$bin" ] || bin=$(qemu_guest_binary "$arch")

dev=$QEMU_ROOT/target/qemu-device/$arch
mkdir -p "$dev"
if ((fresh)) || [ ! -f "$dev/data.img" ]; then
    bash "$here/build-image.sh" --arch "$arch" assemble --bin "$bin" --out "$dev"
else # a new root with the current binary, the data disk as it was
    mv "$dev/data.img" "$dev/data.keep"
    bash "$here/build-image.sh" --arch "$arch" assemble --bin "$bin" --out "$dev"
    mv "$dev/data.keep" "$dev/data.img"
fi

reg_port=$(free_port)
trap '[ -f "$dev/registry/registry.pid" ] && kill_pid "$(cat "$dev/registry/registry.pid")"' EXIT
rm -rf "$dev/registry" "$dev/images"
harness_start_registry "$dev/registry" "$reg_port"
qemu_push_test_images "$dev/images" "$arch" "$reg_port"

python3 "$here/runner.py" interactive --image "$dev" --workdir "$dev/run" \
    --mqtt-port "${LEDA_QEMU_MQTT_PORT:-18830}" --registry-port "$reg_port"
