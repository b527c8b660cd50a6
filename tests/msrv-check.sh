#!/usr/bin/env bash
# Fails when leda-cm stops building where Leda builds (Yocto kirkstone with meta-lts-mixins'
# Rust, stock scarthgap's Rust 1.75). It checks, without a 1.75 compiler:
#   - Cargo.toml's rust-version is the MSRV (1.75);
#   - Cargo.lock is format 3 (cargo 1.75 cannot read format 4);
#   - no package in Cargo.lock, for any target, declares a rust-version above the MSRV or
#     edition 2024 (old cargo parses the manifest of every locked package it builds);
#   - the layer's LEDA_CM_RUST_MIN and clippy.toml's msrv are the MSRV, so the recipe's guard
#     and clippy::incompatible_msrv (run by .ci/run's clippy step) check against it.
# A compiler proves the rest: tests/roots/msrv-trixie.sh builds and runs the unit tests with
# the oldest toolchain the package registries give (meta-leda-cm/README.md says what is
# proven how).
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=1.75
fail=0
bad() { echo "error: $*" >&2; fail=1; }

declared=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ "$declared" = "$msrv" ] || bad "Cargo.toml says rust-version = \"$declared\", leda-cm's MSRV is $msrv"

lock_version=$(sed -n 's/^version = \([0-9]*\)$/\1/p' Cargo.lock | head -n1)
[ "$lock_version" = 3 ] ||
    bad "Cargo.lock is format ${lock_version:-?}; cargo $msrv reads format 3 (delete it and run cargo generate-lockfile: rust-version $msrv makes cargo write format 3)"

clippy_msrv=$(sed -n 's/^msrv = "\(.*\)"$/\1/p' clippy.toml 2>/dev/null || true)
[ "$clippy_msrv" = "$msrv" ] || bad "clippy.toml msrv is \"${clippy_msrv:-unset}\", not \"$msrv\""
# clippy skips test code for incompatible_msrv unless told (the unit tests build with it too).
grep -qx 'check-incompatible-msrv-in-tests = true' clippy.toml ||
    bad "clippy.toml lacks check-incompatible-msrv-in-tests = true"

inc=meta-leda-cm/recipes-containers/leda-cm/leda-cm.inc
rust_min=$(sed -n 's/^LEDA_CM_RUST_MIN = "\(.*\)"$/\1/p' "$inc")
[ "$rust_min" = "$msrv" ] || bad "$inc: LEDA_CM_RUST_MIN = \"$rust_min\", not \"$msrv\""

# Every locked package, whatever target it is for (cargo metadata without --filter-platform).
if ! report=$(cargo metadata --format-version 1 --locked --offline 2>/dev/null ||
    cargo metadata --format-version 1 --locked); then
    bad "cargo metadata --locked failed: Cargo.lock does not match Cargo.toml"
    report='{"packages":[]}'
fi
if ! echo "$report" | python3 -c '
import json, sys
msrv = tuple(int(x) for x in sys.argv[1].split("."))
packages = json.load(sys.stdin)["packages"]
key = lambda v: tuple(int(x) for x in v.split("."))
too_new = sorted(
    (p["name"], p["version"], p.get("rust_version") or "-", p["edition"])
    for p in packages
    if (p.get("rust_version") and key(p["rust_version"]) > msrv) or p["edition"] >= "2024"
)
declared = [key(p["rust_version"]) for p in packages if p.get("rust_version")]
highest = ".".join(map(str, max(declared))) if declared else "none"
print(f"{len(packages)} locked packages; highest rust-version declared: {highest}")
for name, version, rv, edition in too_new:
    print(f"error: {name} {version} needs rust-version {rv} (edition {edition})", file=sys.stderr)
sys.exit(1 if too_new else 0)
' "$msrv"; then
    bad "packages above Rust $msrv in Cargo.lock: pin an older version (cargo update -p NAME --precise VERSION) or drop the dependency"
fi

if ((fail)); then
    exit 1
fi
echo "MSRV $msrv: Cargo.toml, Cargo.lock (format 3), LEDA_CM_RUST_MIN and clippy.toml agree"
