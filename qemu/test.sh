#!/usr/bin/env bash
# The QEMU scenarios of leda-cm (first boot, watchdog, MQTT update, reboot persistence) on
# the Debian test image, booted under TCG. Part of `bash tests/run-all.sh`.
#
#   qemu/test.sh [--arch x86_64|aarch64] [--bin LEDA_CM_BINARY] [--keep]
#
# Host side: a docker-registry on 127.0.0.1 with the busybox test images (tests/harness/lib.sh),
# reached by the guest as 10.0.2.100:5000; MQTT forwarded from 127.0.0.1:<free port>.
# Logs (the timestamped serial console, the scenario output) stay in target/qemu-logs/;
# the run's images are removed unless the run failed or --keep is given.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/harness/lib.sh
. "$QEMU_ROOT/tests/harness/lib.sh"

arch=amd64 bin="" keep=0
while (($#)); do
    case $1 in
    --arch) arch=$(qemu_arch "$2"); shift 2 ;;
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    *) qdie "usage: qemu/test.sh [--arch x86_64|aarch64] [--bin BINARY] [--keep]" ;;
    esac
done

started=$SECONDS
qemu_install_host_packages
[ -n "$bin" ] || bin=$(qemu_guest_binary "$arch")

mkdir -p "$QEMU_ROOT/target/qemu-run" "$QEMU_ROOT/target/qemu-logs"
work=$(mktemp -d "$QEMU_ROOT/target/qemu-run/$arch.XXXXXX")
logs=$QEMU_ROOT/target/qemu-logs/$(date +%Y%m%d-%H%M%S)-$arch
mkdir -p "$logs"
ln -sfn "$logs" "$QEMU_ROOT/target/qemu-logs/latest"
rc=1
# shellcheck disable=SC2317 # called by the EXIT trap
teardown() {
    set +e
    [ -f "$work/registry/registry.pid" ] && kill_pid "$(cat "$work/registry/registry.pid")"
    cp "$work/run/console.log" "$work/run/qemu-cmdline.txt" "$logs/" 2>/dev/null
    if ((rc == 0 && keep == 0)); then
        rm -rf "$work"
    else
        qlog "work dir kept: $work"
    fi
    qlog "logs: $logs (console.log: the serial console with timestamps)"
}
trap teardown EXIT
trap 'exit 130' INT TERM

reg_port=$(free_port)
harness_start_registry "$work/registry" "$reg_port"
qlog "building the busybox test images for $arch"
qemu_push_test_images "$work/images" "$arch" "$reg_port"

t=$SECONDS
bash "$here/build-image.sh" --arch "$arch" assemble --bin "$bin" --out "$work/image"
qlog "image ready in $((SECONDS - t)) s (cached parts: $QEMU_CACHE)"

set +e
python3 "$here/scenarios.py" --image "$work/image" --workdir "$work/run" \
    --mqtt-port "$(free_port)" --registry-port "$reg_port" \
    --image-ref 10.0.2.100:5000/leda/busybox:1.0 \
    --update-image-ref 10.0.2.100:5000/leda/busybox:2.0 2>&1 | tee "$logs/scenarios.log"
rc=${PIPESTATUS[0]}
set -e
qlog "QEMU part ($arch) took $((SECONDS - started)) s in all"
exit "$rc"
