#!/usr/bin/env bash
# Offline checks of the meta-leda-cm BitBake layer (CI; needs package registries only):
#   1. oelint-adv --release R on every recipe and bbappend, clean, for each release R of
#      LAYERSERIES_COMPAT;
#   2. leda-cm-crates.inc regenerated from Cargo.lock equals the committed one (every crate
#      from crates.io with a checksum, or the generator fails);
#   3. the layer's structure: README (maintainer, patches, email), LAYERSERIES_COMPAT and
#      LAYERDEPENDS set, bbappends only under dynamic-layers/, no AUTOREV, no network during
#      a task, LIC_FILES_CHKSUM matching LICENSE, SRCREV a commit in the history of HEAD,
#      the kas files valid for kas;
#   4. the systemd unit, with and without the state-dir drop-in, passes
#      `systemd-analyze verify` without a word, and the tmpfiles.d entry makes the dir;
#   5. the crate list is complete: exactly the crates it names (checked against their
#      sha256), unpacked as a cargo directory source, build leda-cm with
#      `cargo build --frozen --offline` as cargo.bbclass runs it (from outside the source
#      tree, with --target); the config.json the recipe installs is then accepted by that
#      binary without a warning, and the recipe's LEDA_CM_RUST_MIN is the newest
#      rust-version among Cargo.toml and those crates.
# Installs what it needs when missing (Debian packages; oelint-adv into a venv under
# target/layer-check). Work files stay under target/layer-check.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
layer=$repo/meta-leda-cm
work=$repo/target/layer-check
recipe_dir=$layer/recipes-containers/leda-cm
OELINT_VERSION=9.11.2
KAS_VERSION=5.5
mkdir -p "$work"

fail() { echo "error: $*" >&2; exit 1; }
step() { printf '== layer: %s\n' "$*"; }
elapsed() { echo "   ($(($(date +%s) - $1)) s)"; }

missing=()
for p in python3 python3-venv systemd git tar gzip; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || fail "missing Debian packages ${missing[*]}; only root can install them"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -c 'import tomllib' 2>/dev/null || fail "python3 >= 3.11 is needed (tomllib)"

# --- 1. oelint-adv ------------------------------------------------------------------------
releases=$(sed -n 's/^LAYERSERIES_COMPAT_leda-cm = "\(.*\)"$/\1/p' "$layer/conf/layer.conf")
[ -n "$releases" ] || fail "no LAYERSERIES_COMPAT_leda-cm in $layer/conf/layer.conf"
step "oelint-adv $OELINT_VERSION --release each of: $releases"
t=$(date +%s)
venv=$work/venv
if [ "$("$venv/bin/oelint-adv" --version 2>/dev/null || true)" != "$OELINT_VERSION" ] ||
    [ "$("$venv/bin/kas" --version 2>&1 | awk '{print $NF}')" != "$KAS_VERSION" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "oelint-adv==$OELINT_VERSION" "kas==$KAS_VERSION"
fi
mapfile -t recipes < <(find "$layer" -name '*.bb' -o -name '*.bbappend' | sort)
# oelint.vars.homepageping is the one rule suppressed: it fetches HOMEPAGE over the
# network, which CI does not have.
for release in $releases; do
    if ! out=$("$venv/bin/oelint-adv" --release "$release" --quiet --hide info \
        --suppress oelint.vars.homepageping "${recipes[@]}" 2>&1) || [ -n "$out" ]; then
        echo "$out" >&2
        fail "oelint-adv --release $release found problems"
    fi
done
echo "   ${#recipes[@]} recipes and bbappends clean for each"
elapsed "$t"

# --- 2. the crate list --------------------------------------------------------------------
step "leda-cm-crates.inc matches Cargo.lock"
inc=$recipe_dir/leda-cm-crates.inc
python3 "$layer/scripts/gen-crates-inc.py" --check "$inc"
ncrates=$(grep -c '^    crate://crates.io/' "$inc")
echo "   $ncrates crates, each from crates.io with its sha256"

# --- 3. the layer's structure -------------------------------------------------------------
step "structure"
readme=$layer/README.md
# yocto-check-layer's test_readme, which skips its checks when the text names another README.
grep -qi maintainer "$readme" || fail "$readme names no maintainer"
grep -qi patch "$readme" || fail "$readme says nothing about patches"
grep -Eq '[^@ <]+@[^@ >]+\.[a-z]+' "$readme" || fail "$readme holds no email address"
! grep -qi readme "$readme" || fail "$readme mentions a README: yocto-check-layer would skip its checks"
[ -s "$layer/LICENSE" ] || fail "the layer has no LICENSE"
conf=$layer/conf/layer.conf
grep -Eq '^LAYERSERIES_COMPAT_leda-cm = "[a-z ]+"' "$conf" || fail "LAYERSERIES_COMPAT_leda-cm is not set"
grep -Eq '^LAYERDEPENDS_leda-cm = ".*\bvirtualization-layer\b' "$conf" || fail "LAYERDEPENDS_leda-cm lacks virtualization-layer"
grep -Eq '^LAYERVERSION_leda-cm = "[0-9]+"' "$conf" || fail "LAYERVERSION_leda-cm is not set"
stray=$(find "$layer" -name '*.bbappend' -not -path "$layer/dynamic-layers/*")
[ -z "$stray" ] || fail "bbappends outside dynamic-layers/ change other layers' recipes: $stray"
if grep -rnE 'AUTOREV|\[network\]' "$layer" --include='*.bb' --include='*.bbappend' --include='*.inc' --include='*.conf'; then
    fail "AUTOREV or network access during a task"
fi
src_inc=$recipe_dir/leda-cm-src.inc
md5=$(md5sum LICENSE | cut -d' ' -f1)
grep -q "file://LICENSE;md5=$md5\"" "$src_inc" || fail "LIC_FILES_CHKSUM in $src_inc does not match LICENSE ($md5)"
srcrev=$(sed -n 's/^SRCREV = "\([0-9a-f]\{40\}\)"$/\1/p' "$src_inc")
[ -n "$srcrev" ] || fail "SRCREV in $src_inc is not a pinned 40-digit commit"
if git cat-file -e "$srcrev^{commit}" 2>/dev/null; then
    if ! git show "$srcrev:Cargo.lock" | python3 -c '
import sys, pathlib, importlib.util
spec = importlib.util.spec_from_file_location("g", sys.argv[1]); g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)
sys.exit(g.render(sys.stdin.read()) != pathlib.Path(sys.argv[2]).read_text())' "$layer/scripts/gen-crates-inc.py" "$inc"; then
        echo "   note: Cargo.lock at SRCREV ${srcrev:0:12} differs from the working tree's: bump SRCREV at the next release"
    fi
    # BitBake fetches SRCREV from branch main: it has to be in the history this tree
    # comes from (a later main contains it too).
    git merge-base --is-ancestor "$srcrev" HEAD ||
        fail "SRCREV ${srcrev:0:12} in $src_inc is not an ancestor of HEAD"
elif [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    echo "   note: SRCREV ${srcrev:0:12} is not in this shallow clone: not checked"
else
    fail "SRCREV $srcrev in $src_inc names no commit of this repository"
fi
# The kas files: kas's own schema, and their includes (paths from the repository's top).
"$venv/bin/python" - "$repo" "$layer"/kas/*.yml <<'EOF'
import os, sys, jsonschema, yaml
from kas.configschema import CONFIGSCHEMA
repo = sys.argv[1]
for f in sys.argv[2:]:
    data = yaml.safe_load(open(f))
    try:
        jsonschema.validate(data, CONFIGSCHEMA)
    except jsonschema.ValidationError as e:
        sys.exit(f"error: {f}: {e.message}")
    for inc in data.get("header", {}).get("includes", []):
        if isinstance(inc, str) and not os.path.isfile(os.path.join(repo, inc)):
            sys.exit(f"error: {f}: included {inc} does not exist")
EOF
echo "   README, LICENSE, layer.conf, bbappends, SRCREV, LIC_FILES_CHKSUM and kas files in order"

# --- 4. the systemd unit ------------------------------------------------------------------
step "systemd-analyze verify"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify wants ExecStart to exist and the paths of RequiresMountsFor= to be absolute.
printf '#!/bin/sh\n' >"$tmp/container-management"
chmod +x "$tmp/container-management"
verify() { # verify DIR: the unit (and its drop-ins) in DIR
    local out
    out=$(systemd-analyze verify "$1/leda-cm.service" 2>&1) || true
    [ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify $1/leda-cm.service"; }
}
mkdir -p "$tmp/plain" "$tmp/dropin/leda-cm.service.d"
sed "s|/usr/bin/container-management|$tmp/container-management|" \
    "$recipe_dir/files/leda-cm.service" >"$tmp/plain/leda-cm.service"
verify "$tmp/plain"
cp "$tmp/plain/leda-cm.service" "$tmp/dropin/"
sed "s|@LEDA_CM_STATE_DIR@|$tmp/state|g" "$recipe_dir/files/state-dir.conf" \
    >"$tmp/dropin/leda-cm.service.d/10-state-dir.conf"
mkdir -p "$tmp/state"
verify "$tmp/dropin"
sed "s|@LEDA_CM_STATE_DIR@|/data/leda-cm|g" "$recipe_dir/files/tmpfiles.conf" >"$tmp/tmpfiles.conf"
out=$(systemd-tmpfiles --root="$tmp/root" --create "$tmp/tmpfiles.conf" 2>&1) || true
[ -z "$out" ] && [ "$(stat -c %a "$tmp/root/data/leda-cm" 2>/dev/null)" = 700 ] ||
    fail "systemd-tmpfiles did not make the state dir from files/tmpfiles.conf: $out"
echo "   leda-cm.service clean, alone and with the state-dir drop-in; tmpfiles.conf makes the dir"

# --- 5. the crate list builds leda-cm -----------------------------------------------------
step "cargo build --frozen --offline from exactly the crates of leda-cm-crates.inc"
t=$(date +%s)
cache=${CARGO_HOME:-$HOME/.cargo}/registry/cache
vendor=$work/vendor
rm -rf "$vendor"
mkdir -p "$vendor"
unpack_crates() {
    python3 - "$inc" "$cache" "$vendor" <<'EOF'
import glob, hashlib, json, os, re, subprocess, sys
inc, cache, vendor = sys.argv[1:]
text = open(inc).read()
crates = re.findall(r"^    crate://crates\.io/([^/]+)/(\S+) \\$", text, re.M)
sums = dict(re.findall(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', text, re.M))
missing = []
for name, version in crates:
    key = f"{name}-{version}"
    found = glob.glob(os.path.join(cache, "*", key + ".crate"))
    if not found:
        missing.append(key)
        continue
    data = open(found[0], "rb").read()
    if hashlib.sha256(data).hexdigest() != sums.get(key):
        sys.exit(f"error: {key}.crate does not match its sha256 in {inc}")
    subprocess.run(["tar", "-xzf", found[0], "-C", vendor], check=True)
    with open(os.path.join(vendor, key, ".cargo-checksum.json"), "w") as f:
        json.dump({"files": {}, "package": sums[key]}, f)
if missing:
    print(" ".join(missing))
    sys.exit(3)
EOF
}
rc=0
absent=$(unpack_crates) || rc=$?
if [ "$rc" = 3 ]; then
    echo "   fetching from crates.io: $absent"
    cargo fetch --locked --quiet
    rm -rf "$vendor" && mkdir -p "$vendor"
    unpack_crates >/dev/null
elif [ "$rc" != 0 ]; then
    exit "$rc"
fi
[ "$(find "$vendor" -mindepth 1 -maxdepth 1 -type d | wc -l)" = "$ncrates" ] || fail "vendor dir does not hold $ncrates crates"
cargo_home=$work/cargo-home
mkdir -p "$cargo_home"
cat >"$cargo_home/config.toml" <<EOF
[source.crates-io]
replace-with = "leda-cm-crates-inc"
[source.leda-cm-crates-inc]
directory = "$vendor"
EOF
host=$(rustc -vV | sed -n 's/^host: //p')
# As cargo.bbclass: cwd outside the source tree (the repository's .cargo/config.toml is not
# read), --target, and no rustc wrapper; a dev build without debug info, the quickest.
(cd "$work" && CARGO_HOME=$cargo_home RUSTC_WRAPPER="" CARGO_PROFILE_DEV_DEBUG=0 nice cargo build --frozen --offline --quiet \
    --manifest-path "$repo/Cargo.toml" --target "$host" --target-dir "$work/target")
bin=$work/target/$host/debug/leda-cm
[ -x "$bin" ] || fail "no $bin"
echo "   $ncrates crates, leda-cm built"
elapsed "$t"

step "LEDA_CM_RUST_MIN is the newest rust-version of leda-cm and its crates"
need=$(python3 - "$repo/Cargo.toml" "$vendor" <<'EOF'
import glob, os, sys, tomllib
found = []
for f in [sys.argv[1]] + glob.glob(os.path.join(sys.argv[2], "*", "Cargo.toml")):
    pkg = tomllib.load(open(f, "rb")).get("package", {})
    v = pkg.get("rust-version")
    if isinstance(v, str):
        found.append((tuple(int(x) for x in v.split(".")), v, pkg.get("name", "?")))
key, v, name = max(found)
print(".".join(str(x) for x in (key + (0, 0))[:2]), name, v)
EOF
)
read -r rust_min rust_min_crate rust_min_declared <<<"$need"
have=$(sed -n 's/^LEDA_CM_RUST_MIN = "\(.*\)"$/\1/p' "$recipe_dir/leda-cm.inc")
[ "$have" = "$rust_min" ] ||
    fail "LEDA_CM_RUST_MIN = \"$have\" in leda-cm.inc, but $rust_min_crate asks for Rust $rust_min_declared: set \"$rust_min\" (and the README)"
echo "   Rust $rust_min ($rust_min_crate asks for $rust_min_declared)"

step "config.json accepted by leda-cm"
sed -e "s|@LEDA_CM_STATE_DIR@|/var/lib/container-management|" -e 's|@LEDA_CM_LOG_FILE@||' \
    -e 's|@LEDA_CM_THINGS_ENABLED@|true|' -e 's|@LEDA_CM_MANIFESTS_DIR@|/etc/container-management/containers|' \
    "$recipe_dir/files/config.json" >"$tmp/config.json"
python3 -m json.tool "$tmp/config.json" >/dev/null
mkdir -p "$tmp/home" "$tmp/run"
# The flags move every path the daemon writes into $tmp; without containerd it waits, and
# is stopped after 3 s. Exit 78 is a rejected configuration.
rc=0
timeout 3 "$bin" daemon --cfg-file "$tmp/config.json" --cm-home-dir "$tmp/home" \
    --cm-exec-root-dir "$tmp/run" --grpc-serv-ap "$tmp/run/cm.sock" \
    --ccl-ap "$tmp/run/no-containerd.sock" >"$tmp/daemon.log" 2>&1 || rc=$?
if [ "$rc" != 124 ] || grep -qi 'unknown key' "$tmp/daemon.log"; then
    cat "$tmp/daemon.log" >&2
    fail "leda-cm rejects (exit $rc) or warns about the layer's config.json"
fi
echo "   accepted: still running after 3 s, no warning"
