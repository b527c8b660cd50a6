#!/usr/bin/env bash
# Checks of the shipped artefacts: the release binary is statically linked, and the systemd
# unit passes `systemd-analyze verify` without a word.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
# The multi-call binary and the containers' log driver beside it, both static.
for bin in target/release/leda-cm target/release/leda-cm-logd; do
    desc=$(file -b "$bin")
    echo "release binary: $(stat -c %s "$bin") bytes; $desc"
    case $desc in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "error: $bin is not statically linked" >&2; exit 1 ;;
    esac
    if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
        echo "error: $bin needs shared libraries:" >&2
        readelf -d "$bin" | grep NEEDED >&2
        exit 1
    fi
done
bin=target/release/leda-cm

unit=meta-leda-cm/recipes-containers/leda-cm/files/leda-cm.service
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify wants ExecStart to exist: point it at the binary just built.
ln -s "$PWD/$bin" "$tmp/container-management"
sed "s|/usr/bin/container-management|$tmp/container-management|" "$unit" >"$tmp/leda-cm.service"
out=$(systemd-analyze verify "$tmp/leda-cm.service" 2>&1) || true
if [ -n "$out" ]; then
    echo "error: systemd-analyze verify $unit:" >&2
    echo "$out" >&2
    exit 1
fi
echo "systemd-analyze verify $unit: clean"
