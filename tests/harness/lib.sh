# shellcheck shell=bash
# The test harness's building blocks: a private containerd, a mosquitto broker and two OCI
# registries (open, basic auth) on loopback, and a busybox test image built without internet.
#
# Sourced by tests/harness/run (the whole harness for a test run) and tests/harness/device
# (a local device left running). Every daemon is started by these functions, recorded by PID
# in the work dir, and stopped by PID: nothing else on the machine is touched.

# gcc and libc6-dev: rustc links through `cc`, and the static release binary needs libc.a; a
# fresh Debian 12 has neither (tests/roots/fresh-bookworm.sh: "linker `cc` not found").
# python3-venv: tests/grpc_clients.rs installs grpcio from PyPI into a venv under target/.
HARNESS_PACKAGES=(containerd runc mosquitto mosquitto-clients skopeo umoci docker-registry
    busybox-static protobuf-compiler apache2-utils containernetworking-plugins iptables
    iproute2 util-linux procps file python3 python3-venv jq python3-paho-mqtt openssl gcc
    libc6-dev)

log() { printf '[harness] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs the Debian packages the tests need, only those missing.
harness_install_packages() {
    local missing=() p
    for p in "${HARNESS_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        [ "$(id -u)" = 0 ] || die "the packages ${missing[*]} are missing and only root can install them"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# harness_listens PID PORT: PID (the process this harness started, not whoever else took the
# port meanwhile) listens on TCP PORT.
harness_listens() {
    ss -Hltnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- networks of one instance ----------------------------------------------------------
# Harness instances (test runs, their test daemons, devices) run side by side on one host:
# each bridge gets a name and a /24 of 10.207.0.0/16 of its own, claimed host-wide under
# $LEDA_HARNESS_NET_CLAIMS (a directory per /24, made under a flock so that two claimers never
# take the same). A claim records its owner dir and PID; one whose PID is gone (0: only the
# dir counts) or whose owner dir is gone is stale and taken over. A /24 some route or address
# of this host already covers is never claimed.
HARNESS_NET_CLAIMS=${LEDA_HARNESS_NET_CLAIMS:-/tmp/leda-cm-net-claims}

harness_claim_live() { # CLAIM-DIR: is its owner still there?
    local c=$1 owner pid
    owner=$(cat "$c/owner" 2>/dev/null) || return 1
    pid=$(cat "$c/pid" 2>/dev/null) || return 1
    [ -n "$owner" ] && [ -d "$owner" ] || return 1
    [ "$pid" = 0 ] || kill -0 "$pid" 2>/dev/null
}

# harness_claim_net OWNER-DIR TAG [PID]: claims a /24 and a bridge name for OWNER-DIR (an
# existing dir; held while PID lives, 0 or none: while OWNER-DIR exists); prints "BRIDGE NET3", e.g.
# "lcab12cd-17 10.207.17" (bridge lc<TAG>-<n>, at most 15 characters for a 6-character TAG,
# address NET3.1/24).
harness_claim_net() {
    local owner=$1 tag=$2 pid=${3:-0} d=$HARNESS_NET_CLAIMS
    mkdir -p "$d"
    (
        flock -w 60 9 || die "cannot lock $d/lock"
        local taken i net3 c start
        taken=$({ ip -4 route show; ip -4 -o addr show; } | sed 's/^/ /')
        # Start at a point of the owner's own, so that claimers rarely walk the same slots.
        start=$(( $(printf '%s' "$owner" | cksum | cut -d' ' -f1) % 253 ))
        for i in $(seq 0 252); do
            i=$(( (start + i) % 253 + 2 ))
            net3=10.207.$i
            c=$d/$net3
            if [ -d "$c" ]; then
                harness_claim_live "$c" && continue
                harness_release_claim "$c"
            fi
            case $taken in *" $net3."*) continue ;; esac
            mkdir "$c" || continue
            echo "$owner" >"$c/owner"
            echo "$pid" >"$c/pid"
            echo "lc$tag-$i" >"$c/bridge"
            printf 'lc%s-%s %s\n' "$tag" "$i" "$net3"
            exit 0
        done
        die "no free /24 in 10.207.0.0/16 (claims in $d)"
    ) 9>>"$d/lock"
}

# Removes a claim and its bridge (when there); the caller holds the lock.
harness_release_claim() {
    local c=$1 bridge
    bridge=$(cat "$c/bridge" 2>/dev/null) || bridge=
    if [ -n "$bridge" ]; then ip link del "$bridge" 2>/dev/null || true; fi
    rm -rf "$c"
}

# harness_release_net NET3: gives the claim of NET3 back, removing its bridge.
harness_release_net() {
    local d=$HARNESS_NET_CLAIMS
    [ -d "$d/$1" ] || return 0
    (
        flock -w 60 9 || exit 1
        harness_release_claim "$d/$1"
    ) 9>>"$d/lock"
}

# harness_release_nets_of DIR: gives back every claim whose owner dir is DIR or under it.
harness_release_nets_of() {
    local dir=${1%/} d=$HARNESS_NET_CLAIMS c owner
    [ -d "$d" ] || return 0
    (
        flock -w 60 9 || exit 1
        for c in "$d"/10.207.*; do
            [ -d "$c" ] || continue
            owner=$(cat "$c/owner" 2>/dev/null) || owner=
            case $owner in "$dir" | "$dir"/*) harness_release_claim "$c" ;; esac
        done
    ) 9>>"$d/lock"
}

# harness_others_hold_nets DIR: does a live claim of an owner outside DIR exist (another
# instance's bridge, which needs forwarding and the portmap chains)?
harness_others_hold_nets() {
    local dir=${1%/} d=$HARNESS_NET_CLAIMS c owner
    for c in "$d"/10.207.*; do
        [ -d "$c" ] || continue
        owner=$(cat "$c/owner" 2>/dev/null) || owner=
        case $owner in "$dir" | "$dir"/*) continue ;; esac
        harness_claim_live "$c" && return 0
    done
    return 1
}

# The bridge plugin turns IPv4 forwarding on, for every instance at once: the first instance
# notes how it was (host-wide), the last one going puts it back.
harness_note_ip_forward() {
    mkdir -p "$HARNESS_NET_CLAIMS"
    [ -f "$HARNESS_NET_CLAIMS/ip-forward-before" ] ||
        cat /proc/sys/net/ipv4/ip_forward >"$HARNESS_NET_CLAIMS/ip-forward-before"
}

harness_restore_ip_forward() { # OWNER-DIR: unless an instance outside it holds a bridge
    local f=$HARNESS_NET_CLAIMS/ip-forward-before
    [ -f "$f" ] || return 0
    harness_others_hold_nets "$1" && return 0
    # Nor while any bridge is left on this host (OWNER-DIR's are gone by now): one made
    # without a claim (an older harness, another tool) may need forwarding too.
    [ -n "$(ip -o link show type bridge 2>/dev/null)" ] && return 0
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$(cat "$f")" ] ||
        cat "$f" >/proc/sys/net/ipv4/ip_forward
    rm -f "$f"
}

# harness_chain_unused CHAIN: the nat CHAIN is absent or holds no rule.
harness_chain_unused() {
    [ "$(iptables -w -t nat -S "$1" 2>/dev/null | grep -c '^-A ')" = 0 ]
}

# --- containerd -------------------------------------------------------------------------
# harness_start_containerd DIR: a containerd with its own root, state and sockets under DIR.
harness_start_containerd() {
    local d=$1
    mkdir -p "$d/root" "$d/state" "$d/opt"
    cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
# CRI and the snapshotters that cannot work here are off; io.containerd.runtime.v1.linux
# stays: the tasks service needs it.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
TOML
    containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
    echo $! >"$d/containerd.pid"
    wait_for 20 "containerd" ctr --address "$d/containerd.sock" version ||
        { tail -20 "$d/containerd.log" >&2; die "containerd did not come up (log: $d/containerd.log)"; }
}

# Stops what a containerd under DIR runs, then the shims, then containerd itself.
harness_stop_containerd() {
    local d=$1 sock=$1/containerd.sock ns id pid
    [ -f "$d/containerd.pid" ] || return 0
    pid=$(cat "$d/containerd.pid")
    if kill -0 "$pid" 2>/dev/null && [ -S "$sock" ]; then
        for ns in $(ctr --address "$sock" namespaces ls -q 2>/dev/null); do
            for id in $(ctr --address "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
                ctr --address "$sock" -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
            done
            for id in $(ctr --address "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
                timeout 10 ctr --address "$sock" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
            done
            for id in $(ctr --address "$sock" -n "$ns" containers ls -q 2>/dev/null); do
                ctr --address "$sock" -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
            done
        done
    fi
    harness_kill_shims "$sock"
    kill_pid "$pid"
    rm -f "$d/containerd.pid"
    # Mounts a killed shim left behind (rootfs of tasks that could not be deleted).
    local m
    for m in $(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# Shims outlive containerd: end those started for this socket, by PID.
harness_kill_shims() {
    local sock=$1 pid
    for pid in $(pgrep -f -- "containerd-shim.*-address $sock( |$)" 2>/dev/null); do
        kill -9 "$pid" 2>/dev/null || true
    done
}

kill_pid() { # kill_pid PID: TERM, then KILL after 5 s
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# --- mosquitto --------------------------------------------------------------------------
harness_start_mosquitto() { # DIR PORT [EXTRA-CONFIG]: EXTRA-CONFIG is appended (more listeners)
    local d=$1 port=$2 extra=${3:-}
    mkdir -p "$d"
    cat >"$d/mosquitto.conf" <<CONF
per_listener_settings false
# The work dir is private to root (mktemp -d): do not switch to the mosquitto user.
user root
allow_anonymous true
persistence false
log_dest file $d/mosquitto.log
listener $port 127.0.0.1
set_tcp_nodelay true
$extra
CONF
    mosquitto -c "$d/mosquitto.conf" >/dev/null 2>&1 &
    echo $! >"$d/mosquitto.pid"
    wait_for 10 "mosquitto" harness_listens "$!" "$port" ||
        die "mosquitto did not come up on port $port (log: $d/mosquitto.log)"
}

# --- registries -------------------------------------------------------------------------
# harness_start_registry DIR PORT [USER PASS]: docker-registry on 127.0.0.1:PORT, with basic
# auth when USER is given (bcrypt cost 4: cost 12 costs ~0.5 s per request).
harness_start_registry() {
    local d=$1 port=$2 user=${3:-} pass=${4:-}
    mkdir -p "$d/data"
    {
        printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$d/data"
        printf 'http:\n  addr: 127.0.0.1:%s\n' "$port"
        if [ -n "$user" ]; then
            htpasswd -bBC 4 -c "$d/htpasswd" "$user" "$pass" >/dev/null 2>&1
            printf 'auth:\n  htpasswd:\n    realm: leda-cm-test\n    path: %s\n' "$d/htpasswd"
        fi
    } >"$d/config.yml"
    docker-registry serve "$d/config.yml" >"$d/registry.log" 2>&1 &
    echo $! >"$d/registry.pid"
    wait_for 10 "registry" harness_listens "$!" "$port" ||
        die "registry on port $port did not come up (log: $d/registry.log)"
}

# --- images -----------------------------------------------------------------------------
# harness_build_image DIR TAG ARCH [CMD...]: an OCI layout DIR/oci with image TAG: busybox-static
# and its applets, for ARCH (the binary is the host's; other ARCH values are for index tests).
harness_build_image() {
    local d=$1 tag=$2 arch=$3; shift 3
    local bundle=$d/bundle-$tag applet
    [ -d "$d/oci" ] || umoci init --layout "$d/oci"
    umoci new --image "$d/oci:$tag"
    umoci unpack --image "$d/oci:$tag" "$bundle" >/dev/null
    mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/etc" "$bundle/rootfs/tmp" "$bundle/rootfs/proc" \
        "$bundle/rootfs/sys" "$bundle/rootfs/dev" "$bundle/rootfs/var/www"
    cp /bin/busybox "$bundle/rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$applet"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$bundle/rootfs/etc/passwd"
    echo "root:x:0:" >"$bundle/rootfs/etc/group"
    echo "leda-cm test image $tag" >"$bundle/rootfs/var/www/index.html"
    umoci repack --image "$d/oci:$tag" "$bundle" >/dev/null
    rm -rf "$bundle"
    local cmd=("$@")
    ((${#cmd[@]})) || cmd=(/bin/sh)
    local args=() c
    for c in "${cmd[@]}"; do args+=(--config.cmd "$c"); done
    umoci config --image "$d/oci:$tag" --os linux --architecture "$arch" --config.env PATH=/bin "${args[@]}"
}

# harness_push DIR TAG REF [CREDS]: copies the layout's TAG to docker://REF (plain HTTP).
harness_push() {
    local d=$1 tag=$2 ref=$3 creds=${4:-}
    local extra=()
    [ -n "$creds" ] && extra=(--dest-creds "$creds")
    skopeo copy -q --dest-tls-verify=false "${extra[@]}" "oci:$d/oci:$tag" "docker://$ref"
}

# harness_push_multiarch DIR REF: pushes to docker://REF an OCI image index with a linux/amd64
# and a linux/arm64/v8 manifest. Both carry the host's busybox; what tells them apart is the
# config (architecture, and a command printing platform=amd64 or platform=arm64).
harness_push_multiarch() {
    local d=$1 ref=$2
    harness_build_image "$d" multi-amd64 amd64 /bin/sh -c 'echo platform=amd64'
    harness_build_image "$d" multi-arm64 arm64 /bin/sh -c 'echo platform=arm64'
    python3 - "$d/oci" <<'PY'
import hashlib, json, os, sys
oci = sys.argv[1]
layout = json.load(open(os.path.join(oci, "index.json")))
def entry(tag):
    return next(m for m in layout["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
manifests = []
for tag, platform in (("multi-amd64", {"architecture": "amd64", "os": "linux"}),
                      ("multi-arm64", {"architecture": "arm64", "os": "linux", "variant": "v8"})):
    e = entry(tag)
    manifests.append({"mediaType": e["mediaType"], "digest": e["digest"], "size": e["size"], "platform": platform})
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": manifests}).encode()
digest = "sha256:" + hashlib.sha256(index).hexdigest()
open(os.path.join(oci, "blobs", "sha256", digest[7:]), "wb").write(index)
layout["manifests"] = [m for m in layout["manifests"]
                       if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != "multi"]
layout["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                            "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
json.dump(layout, open(os.path.join(oci, "index.json"), "w"))
PY
    skopeo copy -q --all --dest-tls-verify=false "oci:$d/oci:multi" "docker://$ref"
}
