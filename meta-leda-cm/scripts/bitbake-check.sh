#!/usr/bin/env bash
# Checks meta-leda-cm with real BitBake, offline (BB_NO_NETWORK = "1"), for each machine:
#   bitbake -p; bitbake -e leda-cm; bitbake -g leda-cm; bitbake -c unpack leda-cm (against a
#   download dir seeded from this git repository and a local cargo registry cache);
#   bitbake -e and -c unpack leda-cm-system-containers (the sets core and examples of the
#   repository's recipes/ at SRCREV); each recipe's do_install run as
#   `bitbake -e` expands it, on the unpacked sources with the cargo output faked (the shell
#   logic, not a build: that needs Rust >= 1.75 and the downloads of the whole toolchain),
#   also with leda-cm's state moved to /data; and that the dynamic-layers bbappend on
#   Leda's packagegroup-sdv-core changes nothing unless DISTRO_FEATURES has "leda-cm"
#   (against a stub meta-leda-components layer written into the build dir).
#   Every crate:// checksum is verified by this script too (the sha256 of each .crate in the
#   download dir against SRC_URI[NAME-VERSION.sha256sum] of leda-cm-crates.inc, and the
#   checksum of each unpacked crate): kirkstone's BitBake does not check them.
#
#   With --leda META_LEDA: Eclipse Leda's own layers instead of the stub, DISTRO "leda", and
#   for each machine: bitbake -p; bitbake -e leda-cm (Leda's KANTO_MANIFESTS_DIR); bitbake -g
#   sdv-image-full without DISTRO_FEATURES "leda-cm" (Kanto's container-management and
#   kanto-auto-deployer in the graph, leda-cm not) and with it (leda-cm in, neither of the
#   two); no unpack. Recipes of Leda and meta-kanto that follow a branch (AUTOREV) get a
#   fixed SRCREV, since an offline parse cannot ask for the branch's head.
#
#   bitbake-check.sh [options] CORE META_OPENEMBEDDED META_VIRTUALIZATION [META_RASPBERRYPI]
#
# CORE is a poky checkout, or an openembedded-core checkout together with --bitbake DIR
# (whinlatter and later have no poky branch). All checkouts must be of the same release.
# On kirkstone, give the Rust mixin (meta-lts-mixins, branch kirkstone/rust) with --layer: the
# recipe parses and unpacks without it, but kirkstone's Rust (1.59) cannot compile leda-cm.
# Options:
#   --bitbake DIR       BitBake checkout (when CORE is openembedded-core)
#   --build DIR         build directory: conf, TMPDIR, DL_DIR, sstate, logs
#                       (default: ${XDG_CACHE_HOME:-~/.cache}/leda-cm-bitbake-check)
#   --machines "M ..."  default: qemux86-64 qemuarm64, plus raspberrypi4-64 when
#                       META_RASPBERRYPI is given
#   --crates DIR        directory holding NAME-VERSION.crate files
#                       (default: $CARGO_HOME/registry/cache/*/, else ~/.cargo/registry/cache/*/)
#   --layer DIR         an extra layer (repeatable), e.g. a Rust mixin layer
#   --leda DIR          a checkout of Eclipse Leda's meta-leda (kirkstone; the revision that
#                       kas/leda-cm-leda-kirkstone.yml pins): adds its meta-leda-components,
#                       meta-leda-distro and meta-leda-bsp. The layers they need come with
#                       --layer: meta-kanto, meta-rauc, meta-clang (and Leda's Go mixin,
#                       meta-lts-mixins kirkstone/go)
# Runs as a non-root user (BitBake refuses root) with an en_US.UTF-8 locale. Exits non-zero
# when any check fails; the summary is printed and kept in BUILD/summary.txt.
set -euo pipefail
# The whole script is one block, read before it runs: editing the file meanwhile is safe.
{

here=$(cd "$(dirname "$0")" && pwd)
layer=$(dirname "$here")
repo=$(git -C "$layer" rev-parse --show-toplevel)
build=${XDG_CACHE_HOME:-$HOME/.cache}/leda-cm-bitbake-check
bitbake_dir=""
machines=""
crates=""
extra_layers=()
leda=""

die() { echo "error: $*" >&2; exit 2; }

while (($#)); do
    case $1 in
    --bitbake) bitbake_dir=$(realpath "$2"); shift 2 ;;
    --build) build=$2; shift 2 ;;
    --machines) machines=$2; shift 2 ;;
    --crates) crates=$2; shift 2 ;;
    --layer) extra_layers+=("$(realpath "$2")"); shift 2 ;;
    --leda) leda=$(realpath "$2"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
    esac
done
(($# == 3 || $# == 4)) || die "usage: $0 [options] CORE META_OPENEMBEDDED META_VIRTUALIZATION [META_RASPBERRYPI]"
core=$(realpath "$1")
meta_oe=$(realpath "$2")
meta_virt=$(realpath "$3")
meta_rpi=${4:+$(realpath "$4")}
[ "$(id -u)" != 0 ] || die "BitBake refuses to run as root: run this as an ordinary user"
[ -n "$machines" ] || machines="qemux86-64 qemuarm64${meta_rpi:+ raspberrypi4-64}"

if [ -d "$core/meta-poky" ]; then
    distro=poky
    [ -n "$bitbake_dir" ] || bitbake_dir=$core/bitbake
else
    distro=nodistro
    [ -n "$bitbake_dir" ] || die "$core is not poky: give --bitbake DIR"
fi
[ -x "$bitbake_dir/bin/bitbake" ] || die "no BitBake in $bitbake_dir"
[ -f "$core/meta/conf/layer.conf" ] || die "$core holds no meta/ layer"
release=$(sed -n 's/^LAYERSERIES_CORENAMES = "\(.*\)"/\1/p' "$core/meta/conf/layer.conf")

if [ -z "$crates" ]; then
    for c in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/; do crates=$c; done
fi
[ -d "$crates" ] || die "no crate cache found: give --crates DIR"

mkdir -p "$build"
build=$(realpath "$build")
downloads=$build/downloads
mkdir -p "$downloads" "$build/logs"

# --- the download dir: a bare mirror of this repository and the crates --------------------
inc=$layer/recipes-containers/leda-cm/leda-cm-src.inc
srcrev=$(sed -n 's/^SRCREV = "\([0-9a-f]*\)"/\1/p' "$inc")
[ -n "$srcrev" ] || die "no SRCREV in $inc"
mirror=$downloads/git2/github.com.eclipse-leda.leda-cm.git
rm -rf "$mirror"
git clone --quiet --bare --no-local "$repo" "$mirror"
git -C "$mirror" cat-file -e "$srcrev^{commit}" || die "SRCREV $srcrev is not in $repo"
# The recipes take SRCREV from branch main (BitBake checks that main contains it). A clone
# without a local main (CI checkouts are often detached) gets main at SRCREV.
if ! git -C "$mirror" merge-base --is-ancestor "$srcrev" refs/heads/main 2>/dev/null; then
    git -C "$mirror" update-ref refs/heads/main "$srcrev"
fi
# The manifests leda-cm-system-containers should install for "core examples": the *.json
# files of those sets at SRCREV.
manifests=$(git -C "$mirror" ls-tree --name-only "$srcrev" recipes/core/ recipes/examples/ |
    sed -n 's,^recipes/[^/]*/\([^/]*\.json\)$,\1,p' | sort)
[ -n "$manifests" ] || die "SRCREV $srcrev holds no recipes/core or recipes/examples manifests"
export MANIFESTS=$manifests

crates_inc=$layer/recipes-containers/leda-cm/leda-cm-crates.inc
rust_min=$(sed -n 's/^LEDA_CM_RUST_MIN = "\(.*\)"$/\1/p' "$layer/recipes-containers/leda-cm/leda-cm.inc")
[ -n "$rust_min" ] || die "no LEDA_CM_RUST_MIN in leda-cm.inc"
ncrates=0
while read -r name version; do
    f=$name-$version.crate
    [ -f "$crates/$f" ] || die "$f is not in $crates"
    cp -f "$crates/$f" "$downloads/$f"
    : >"$downloads/$f.done"
    ncrates=$((ncrates + 1))
done < <(sed -n 's,^ *crate://crates.io/\([^/]*\)/\([^ ]*\) \\$,\1 \2,p' "$crates_inc")

# Does this release's BitBake verify crate:// checksums? From mickledore on, its crate fetcher
# names each crate NAME-VERSION and so reads SRC_URI[NAME-VERSION.sha256sum]; kirkstone's
# names it NAME, finds no checksum and, as it does not ask for one, checks nothing.
if grep -Eq "parm\['name'\] = ('%s-%s' % \(name, version\)|f['\"]\{name\}-\{version\}['\"])" \
    "$bitbake_dir/lib/bb/fetch2/crate.py"; then
    bitbake_checks_crates=yes
else
    bitbake_checks_crates=no
fi

# --- Eclipse Leda's layers, or a stub of meta-leda-components ------------------------------
leda_layers=()
if [ -n "$leda" ]; then
    for l in meta-leda-components meta-leda-distro meta-leda-bsp; do
        [ -f "$leda/$l/conf/layer.conf" ] || die "$leda holds no $l layer: give a meta-leda checkout"
        leda_layers+=("$leda/$l")
    done
    distro=leda
else
    # The dynamic-layers bbappend's target, written into the build dir.
    stub=$build/stub-meta-leda-components
    mkdir -p "$stub/conf" "$stub/recipes-sdv/packagegroups"
    cat >"$stub/conf/layer.conf" <<EOF
BBPATH .= ":\${LAYERDIR}"
BBFILES += "\${LAYERDIR}/recipes-*/*/*.bb"
BBFILE_COLLECTIONS += "meta-leda-components"
BBFILE_PATTERN_meta-leda-components := "^\${LAYERDIR}/"
BBFILE_PRIORITY_meta-leda-components = "7"
LAYERSERIES_COMPAT_meta-leda-components = "$release"
EOF
    cat >"$stub/recipes-sdv/packagegroups/packagegroup-sdv-core.bb" <<'EOF'
SUMMARY = "Stub of Eclipse Leda's packagegroup-sdv-core (bitbake-check only)"
LICENSE = "MIT"
inherit packagegroup
RDEPENDS:${PN} = "mosquitto container-management kanto-auto-deployer"
EOF
    for pn in container-management kanto-auto-deployer; do
        mkdir -p "$stub/recipes-sdv/$pn"
        cat >"$stub/recipes-sdv/$pn/$pn.bb" <<'EOF'
SUMMARY = "Stub of a Kanto/Leda package (bitbake-check only)"
LICENSE = "MIT"
INHIBIT_DEFAULT_DEPS = "1"
ALLOW_EMPTY:${PN} = "1"
EOF
    done
    leda_layers=("$stub")
fi

# --- configuration ------------------------------------------------------------------------
mkdir -p "$build/conf"
layers=("$core/meta")
[ -d "$core/meta-poky" ] && layers+=("$core/meta-poky")
layers+=("$meta_oe/meta-oe" "$meta_oe/meta-python" "$meta_oe/meta-networking"
    "$meta_oe/meta-filesystems" "$meta_virt")
[ -n "$meta_rpi" ] && layers+=("$meta_rpi")
layers+=("${extra_layers[@]}" "$layer" "${leda_layers[@]}")
{
    echo 'BBPATH = "${TOPDIR}"'
    echo 'BBFILES ?= ""'
    echo 'BBLAYERS = " \'
    printf '    %s \\\n' "${layers[@]}"
    echo '"'
} >"$build/conf/bblayers.conf"
cat >"$build/conf/local.conf" <<EOF
DISTRO = "$distro"
BB_NO_NETWORK = "1"
# uninative is a download; offline, the build tools are the host's.
INHERIT:remove = "uninative"
DL_DIR = "$downloads"
SSTATE_DIR = "$build/sstate-cache"
TMPDIR = "$build/tmp"
BB_SIGNATURE_HANDLER = "OEBasicHash"
BB_HASHSERVE = ""
BB_NUMBER_THREADS = "2"
BB_NUMBER_PARSE_THREADS = "2"
PARALLEL_MAKE = "-j 2"
INIT_MANAGER = "systemd"
DISTRO_FEATURES:append = " virtualization systemd usrmerge"
PACKAGE_CLASSES = "package_rpm"
LEDA_CM_CONTAINER_SETS:pn-leda-cm-system-containers = "core examples"
EOF
if [ -n "$leda" ]; then
    # As Leda's kas configuration (meta-leda's .config.yaml) has it.
    cat >>"$build/conf/local.conf" <<EOF
KANTO_MANIFESTS_DIR = "/data/var/containers/manifests"
KAD_LOCK_PATH = "/data/var/lib/kanto-auto-deployer/KAD.enabled"
BLUEPRINTS_DIR = "/data/var/containers/blueprints"
# meta-clang's llvm, not poky's
BBMASK += "$core/meta/recipes-devtools/llvm/"
EOF
    # Recipes that follow a branch (SRCREV = "\${AUTOREV}"): offline, BitBake cannot ask the
    # remote for the branch's head, so they get a fixed revision. The graph does not depend
    # on it; nothing is fetched.
    # "VAR:pn-PN" for each such assignment (PN from the file name: NAME_VERSION.bb or
    # NAME_%.bbappend).
    autorev=$(grep -rHoE '^SRCREV(_[A-Za-z0-9-]+)? *\??= *"\$\{AUTOREV\}"' --include='*.bb' --include='*.bbappend' \
        "${leda_layers[@]}" "${extra_layers[@]}" 2>/dev/null |
        sed -E 's,^.*/([^/:]+)\.bb(append)?:(SRCREV[A-Za-z0-9_-]*).*,\3:pn-\1,; s,:pn-([^_]+)_.*,:pn-\1,' | sort -u)
    for v in $autorev; do
        echo "$v = \"0000000000000000000000000000000000000000\""
    done >>"$build/conf/local.conf"
    printf '%s\n' 'DISTRO_FEATURES:append = " leda-cm"' >"$build/conf/leda-cm-feature.conf"
    # Leda's sdv-rauc-bundle.inc names its bundles after `git describe --always --tags` run
    # in TOPDIR, and fails to parse when that is no git work tree (Leda's own builds live
    # inside the meta-leda checkout): the build dir becomes one, with one empty commit.
    if ! git -C "$build" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$build" init --quiet
        git -C "$build" -c user.name=bitbake-check -c user.email=bitbake-check@localhost \
            commit --quiet --allow-empty -m "bitbake-check build directory"
    fi
else
    # Leda's distro ("leda" in DISTROOVERRIDES) with the feature, and leda-cm's state on
    # /data, read after local.conf (-R).
    printf '%s\n' 'DISTRO_FEATURES:append = " leda-cm"' 'DISTROOVERRIDES .= ":leda"' \
        'LEDA_CM_STATE_DIR = "/data/leda-cm"' >"$build/conf/leda-cm-feature.conf"
fi

# --- the checks -----------------------------------------------------------------------------
export LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8
export PATH="$bitbake_dir/bin:$core/scripts:$PATH"
export BBPATH=$build
export BUILDDIR=$build
export BB_ENV_PASSTHROUGH_ADDITIONS="MACHINE"
cd "$build"

summary=$build/summary.txt
: >"$summary"
failed=0
note() { echo "$*" | tee -a "$summary"; }
rev() { # the commit a checkout is at, "+changes" when its files differ from it
    local r
    r=$(git -C "$1" log -1 --format=%h HEAD 2>/dev/null) || { echo -; return; }
    [ -z "$(git -C "$1" status --porcelain --untracked-files=no -- . 2>/dev/null)" ] || r=$r+changes
    echo "$r"
}
note "meta-leda-cm bitbake-check: release $release ($distro), $(rev "$core") core, $(bitbake --version | head -n1)"
note "layers: $(for l in "${layers[@]}"; do printf '%s@%s ' "$(basename "$l")" "$(rev "$l")"; done)"
[ -z "$leda" ] || note "meta-leda $(git -C "$leda" rev-parse HEAD); AUTOREV recipes given a fixed SRCREV: $(echo $autorev)"
note "download dir: mirror of $repo (SRCREV $srcrev), $ncrates crates; BitBake checks crate checksums: $bitbake_checks_crates"

# run NAME CHECK COMMAND...: runs COMMAND (log in logs/), then the shell snippet CHECK on it.
run() {
    local name=$1 check=$2; shift 2
    local logf=$build/logs/$MACHINE-$name.log start end shown=$*
    # sh -c 'SCRIPT' LOG: show the script, without its redirection into the log.
    [ "$1" != sh ] || shown=$(echo "$3" | sed 's/ >"\$0\.env"//')
    start=$(date +%s)
    if nice "$@" >"$logf" 2>&1 && LOG=$logf bash -euo pipefail -c "$check" >>"$logf" 2>&1; then
        end=$(date +%s)
        note "  pass  $(printf '%-26s %4ss' "$name" $((end - start)))  $shown"
    else
        end=$(date +%s)
        failed=$((failed + 1))
        note "  FAIL  $(printf '%-26s %4ss' "$name" $((end - start)))  $shown  (log: $logf)"
        tail -n 15 "$logf" | sed 's/^/        /' | tee -a "$summary"
    fi
}

envvar() { # envvar LOG VAR: the value of VAR in a `bitbake -e` log
    sed -n "s/^\(export \)\{0,1\}$2=\"\(.*\)\"\$/\2/p" "$1"
}
has() { echo " $1 " | grep -q " $2 "; }   # has LIST WORD
lacks() { ! has "$@"; }
built() { grep -qx "$1" pn-buildlist; }   # after bitbake -g
not_built() { ! built "$1"; }
# crate_sums DIR: every crate of leda-cm-crates.inc against its SRC_URI[NAME-VERSION.sha256sum]:
# the sha256 of DIR/NAME-VERSION.crate (DIR the download dir), or with --vendored the
# "package" checksum of DIR/NAME-VERSION/.cargo-checksum.json, which the crate fetcher
# writes from the .crate it unpacked (and cargo compares with Cargo.lock).
crate_sums() {
    python3 - "$CRATES_INC" "$@" <<'EOF'
import hashlib, json, os, re, sys
inc, where = sys.argv[1], sys.argv[2]
vendored = "--vendored" in sys.argv[3:]
text = open(inc).read()
crates = re.findall(r"^\s*crate://crates\.io/([^/\s]+)/(\S+) \\$", text, re.M)
sums = dict(re.findall(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', text, re.M))
keys = {f"{n}-{v}" for n, v in crates}
bad = [f"SRC_URI[{k}.sha256sum] names no crate:// entry" for k in sorted(set(sums) - keys)]
for key in sorted(keys):
    want = sums.get(key)
    if want is None:
        bad.append(f"{key}: no SRC_URI[{key}.sha256sum]")
        continue
    if vendored:
        path = os.path.join(where, key, ".cargo-checksum.json")
        got = json.load(open(path))["package"] if os.path.exists(path) else "missing"
    else:
        path = os.path.join(where, key + ".crate")
        got = hashlib.sha256(open(path, "rb").read()).hexdigest() if os.path.exists(path) else "missing"
    if got != want:
        bad.append(f"{key}: {path} has {got}, SRC_URI[{key}.sha256sum] = {want}")
for b in bad:
    print("checksum mismatch:", b)
print(f"{len(keys) - len(bad)} of {len(keys)} crates match their SRC_URI sha256sum")
sys.exit(1 if bad else 0)
EOF
}
# try_install LOG: runs do_install as `bitbake -e` expanded it in LOG, after unpack, with the
# cargo build's output faked (an empty executable): the recipe's shell logic, not a build.
# It writes only to the recipe's own image dir ${D}.
try_install() {
    local log=$1 d b bin
    d=$(envvar "$log" D)
    b=$(envvar "$log" B)
    bin=$(envvar "$log" CARGO_TARGET_SUBDIR)
    rm -rf "$d" && mkdir -p "$d" "$b"
    if [ -n "$bin" ]; then
        mkdir -p "$b/target/$bin" && printf '#!/bin/sh\n' >"$b/target/$bin/leda-cm"
        chmod +x "$b/target/$bin/leda-cm"
    fi
    {
        echo 'bbnote() { :; }; bbwarn() { echo "WARNING: $*"; }'
        echo 'bbfatal() { echo "FATAL: $*"; exit 1; }; die() { bbfatal "$@"; }'
        awk '/^[a-z_]+\(\) \{$/ { f = substr($1, 1, length($1) - 2); keep = (f == "do_install" || f == "cargo_do_install") }
             keep { print } /^\}$/ { keep = 0 }' "$log"
        echo do_install
    } >"$log.install.sh"
    (cd "$b" && bash -e "$log.install.sh")
}
# graph_version PN: the version of recipe PN in task-depends.dot (after bitbake -g)
graph_version() {
    sed -n "s/^\"$1\.do_compile\" \[label=\"[^\\]*\\\\n:\([^\\]*\)\\\\n.*/\1/p" task-depends.dot | head -n1
}
# version_ge A B: A >= B (sort -V)
version_ge() { [ "$(printf '%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
# rust_in_graph: the Rust and cargo that would build leda-cm (after bitbake -g) are at least
# LEDA_CM_RUST_MIN, so do_compile's version check passes.
rust_in_graph() {
    local r c
    r=$(graph_version rust-native) c=$(graph_version cargo-native)
    echo "rust-native $r, cargo-native $c in the graph (LEDA_CM_RUST_MIN $RUST_MIN)"
    test -n "$r" && test -n "$c" && version_ge "${r%%-*}" "$RUST_MIN" && version_ge "${c%%-*}" "$RUST_MIN"
}
json() { python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
export CRATES_INC=$crates_inc BITBAKE_CHECKS_CRATES=$bitbake_checks_crates RUST_MIN=$rust_min
export -f envvar has lacks built not_built crate_sums graph_version version_ge rust_in_graph try_install json

# The crates seeded into the download dir, checked here whatever BitBake does.
MACHINE=any run crate-checksums 'crate_sums "'"$downloads"'"' true

# The checks of leda-cm's own recipes, with the stub of meta-leda-components.
check_recipes() {
    run parse 'true' bitbake -p
    run env-leda-cm '
        test "$(envvar "$LOG" SRCREV)" = '"$srcrev"'
        test "$(envvar "$LOG" BB_NO_NETWORK)" = 1
        has "$(envvar "$LOG" RDEPENDS:leda-cm)" virtual-containerd
        has "$(envvar "$LOG" RPROVIDES:leda-cm)" container-management
        has "$(envvar "$LOG" RREPLACES:leda-cm)" container-management
        has "$(envvar "$LOG" RCONFLICTS:leda-cm)" container-management
        test "$(envvar "$LOG" SYSTEMD_SERVICE:leda-cm)" = leda-cm.service
        test "$(envvar "$LOG" LEDA_CM_RUST_MIN)" = '"$rust_min"'
        has "$(envvar "$LOG" DEPENDS)" protobuf-native
        # protoc and the well-known types of the native sysroot
        test "$(envvar "$LOG" PROTOC)" = "$(envvar "$LOG" STAGING_BINDIR_NATIVE)/protoc"
        test "$(envvar "$LOG" PROTOC_INCLUDE)" = "$(envvar "$LOG" STAGING_INCDIR_NATIVE)"
        grep -q "^export PROTOC=" "$LOG" && grep -q "^export PROTOC_INCLUDE=" "$LOG"
        test "$(envvar "$LOG" SRC_URI | grep -o "crate://" | wc -l)" = '"$ncrates"'
        test -z "$(envvar "$LOG" PREFERRED_RPROVIDER_container-management)"
        grep -qx "export CARGO_PROFILE_RELEASE_STRIP=\"false\"" "$LOG"
    ' bitbake -e leda-cm
    run graph-leda-cm '
        test -s task-depends.dot
        built leda-cm
        built protobuf-native
        built cargo-native
        built rust-native
        rust_in_graph
    ' bitbake -g leda-cm
    note "        $(grep "in the graph" "$build/logs/$MACHINE-graph-leda-cm.log" || true)"
    run unpack-leda-cm '
        s=$(envvar "$LOG.env" S)
        w=$(envvar "$LOG.env" CARGO_VENDORING_DIRECTORY)
        test -f "$s/Cargo.lock" && test -f "$s/build.rs"
        test "$(ls "$w"/*/.cargo-checksum.json | wc -l)" = '"$ncrates"'
        # each unpacked crate is the one of its SRC_URI checksum
        crate_sums "$w" --vendored
        # where BitBake verifies the crates, it recorded each checksum in the .done stamp
        [ "$BITBAKE_CHECKS_CRATES" = no ] || test -z "$(find "'"$downloads"'" -maxdepth 1 -name "*.crate.done" -empty)"
        # do_install (shell logic; faked binary)
        try_install "$LOG.env"
        d=$(envvar "$LOG.env" D)
        u=$d$(envvar "$LOG.env" systemd_system_unitdir)
        test -x "$d/usr/bin/leda-cm"
        test "$(readlink "$d/usr/bin/container-management")" = leda-cm
        test "$(readlink "$d/usr/bin/kanto-cm")" = leda-cm
        cmp "$u/leda-cm.service" '"$layer"'/recipes-containers/leda-cm/files/leda-cm.service
        grep -qx "Alias=container-management.service" "$u/leda-cm.service"
        test ! -e "$u/leda-cm.service.d"
        c=$d/etc/container-management/config.json
        test "$(json "$c" "c[\"manager\"][\"home_dir\"]")" = /var/lib/container-management
        test "$(json "$c" "c[\"deployment\"][\"ctr_dir\"]")" = /etc/container-management/containers
        test "$(json "$c" "c[\"things\"][\"enable\"]")" = True
        test "$(json "$c" "c[\"update_agent\"][\"system_containers\"] == [\"sua\"]")" = True
    ' sh -c 'bitbake -e leda-cm >"$0.env" && bitbake -c clean leda-cm && bitbake -c unpack leda-cm' "$build/logs/$MACHINE-unpack-leda-cm.log"
    run env-system-containers '
        test "$(envvar "$LOG" LEDA_CM_MANIFESTS_DIR)" = /etc/container-management/containers
        test "$(envvar "$LOG" PACKAGE_ARCH)" = all
        test "$(envvar "$LOG" LEDA_CM_CONTAINER_SETS)" = "core examples"
    ' bitbake -e leda-cm-system-containers
    run unpack-system-containers '
        s=$(envvar "$LOG.env" S)
        test -d "$s/recipes/core" && test -d "$s/recipes/examples"
        try_install "$LOG.env"
        d=$(envvar "$LOG.env" D)/etc/container-management/containers
        test "$(ls "$d" | sort)" = "$MANIFESTS"
    ' sh -c 'bitbake -e leda-cm-system-containers >"$0.env" && bitbake -c clean leda-cm-system-containers && bitbake -c unpack leda-cm-system-containers' "$build/logs/$MACHINE-unpack-system-containers.log"
    run env-packagegroup-leda-cm '
        r=$(envvar "$LOG" RDEPENDS:packagegroup-leda-cm)
        for p in leda-cm leda-cm-system-containers virtual-containerd virtual-runc cni mosquitto; do has "$r" $p; done
    ' bitbake -e packagegroup-leda-cm
    run sdv-core-without-feature '
        r=$(envvar "$LOG.env" RDEPENDS:packagegroup-sdv-core)
        has "$r" container-management
        has "$r" kanto-auto-deployer
        lacks "$r" leda-cm
        built container-management
        built kanto-auto-deployer
        not_built leda-cm
    ' sh -c 'bitbake -e packagegroup-sdv-core >"$0.env" && bitbake -g packagegroup-sdv-core' "$build/logs/$MACHINE-sdv-core-without-feature.log"
    run sdv-core-with-feature '
        r=$(envvar "$LOG.env" RDEPENDS:packagegroup-sdv-core)
        has "$r" leda-cm
        has "$r" mosquitto
        lacks "$r" container-management
        lacks "$r" kanto-auto-deployer
        test "$(envvar "$LOG.env" PREFERRED_RPROVIDER_container-management)" = leda-cm
        built leda-cm
        not_built container-management
        not_built kanto-auto-deployer
    ' sh -c 'bitbake -R conf/leda-cm-feature.conf -e packagegroup-sdv-core >"$0.env" && bitbake -R conf/leda-cm-feature.conf -g packagegroup-sdv-core' "$build/logs/$MACHINE-sdv-core-with-feature.log"
    # The feature configuration also moves leda-cm's state to /data/leda-cm (as for a
    # read-only root): the drop-in and tmpfiles.d entry.
    run install-state-dir '
        try_install "$LOG"
        d=$(envvar "$LOG" D)
        u=$d$(envvar "$LOG" systemd_system_unitdir)
        grep -qx "StateDirectory=" "$u/leda-cm.service.d/10-state-dir.conf"
        grep -qx "ReadWritePaths=/data/leda-cm" "$u/leda-cm.service.d/10-state-dir.conf"
        grep -qx "RequiresMountsFor=/data/leda-cm" "$u/leda-cm.service.d/10-state-dir.conf"
        grep -qx "d /data/leda-cm 0700 root root -" "$d$(envvar "$LOG" nonarch_libdir)/tmpfiles.d/leda-cm.conf"
        test "$(json "$d/etc/container-management/config.json" "c[\"manager\"][\"home_dir\"]")" = /data/leda-cm
    ' bitbake -R conf/leda-cm-feature.conf -e leda-cm
}

# With Eclipse Leda's own layers: Leda's image, without and with DISTRO_FEATURES "leda-cm".
# Kanto's container-management is the recipe container-management (meta-kanto, with Leda's
# bbappend); Leda's packagegroup-sdv-core also pulls kanto-auto-deployer (meta-leda).
check_leda() {
    run parse 'true' bitbake -p
    run env-leda-cm '
        test "$(envvar "$LOG" DISTRO)" = leda
        has "$(envvar "$LOG" DISTROOVERRIDES | tr : " ")" leda
        test "$(envvar "$LOG" SRCREV)" = '"$srcrev"'
        test "$(envvar "$LOG" LEDA_CM_RUST_MIN)" = '"$rust_min"'
        test "$(envvar "$LOG" PROTOC)" = "$(envvar "$LOG" STAGING_BINDIR_NATIVE)/protoc"
        test "$(envvar "$LOG" LEDA_CM_MANIFESTS_DIR)" = /data/var/containers/manifests
        test -z "$(envvar "$LOG" PREFERRED_RPROVIDER_container-management)"
    ' bitbake -e leda-cm
    run image-without-feature '
        r=$(envvar "$LOG.env" RDEPENDS:packagegroup-sdv-core)
        has "$r" container-management
        has "$r" kanto-auto-deployer
        lacks "$r" leda-cm
        built sdv-image-full
        built container-management
        built kanto-auto-deployer
        not_built leda-cm
    ' sh -c 'bitbake -e packagegroup-sdv-core >"$0.env" && bitbake -g sdv-image-full' "$build/logs/$MACHINE-image-without-feature.log"
    run image-with-feature '
        r=$(envvar "$LOG.env" RDEPENDS:packagegroup-sdv-core)
        has "$r" leda-cm
        lacks "$r" container-management
        lacks "$r" kanto-auto-deployer
        test "$(envvar "$LOG.env" PREFERRED_RPROVIDER_container-management)" = leda-cm
        built sdv-image-full
        built leda-cm
        not_built container-management
        not_built kanto-auto-deployer
        ! grep -q "^\"container-management\.do_" task-depends.dot
        ! grep -q "^\"kanto-auto-deployer\.do_" task-depends.dot
        rust_in_graph
    ' sh -c 'bitbake -R conf/leda-cm-feature.conf -e packagegroup-sdv-core >"$0.env" && bitbake -R conf/leda-cm-feature.conf -g sdv-image-full' "$build/logs/$MACHINE-image-with-feature.log"
    note "        $(grep "in the graph" "$build/logs/$MACHINE-image-with-feature.log" || true)"
}

for MACHINE in $machines; do
    export MACHINE
    note "machine $MACHINE:"
    if [ -n "$leda" ]; then check_leda; else check_recipes; fi
done

if ((failed)); then
    note "$failed check(s) failed"
    exit 1
fi
note "all checks passed"
exit 0
}
