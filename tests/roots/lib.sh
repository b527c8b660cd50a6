# shellcheck shell=bash
# Minimal Debian roots (debootstrap --variant=minbase) for the checks that must not see this
# machine's hand-installed packages: tests/roots/fresh-bookworm.sh (a fresh Debian 12 runs
# the harness's package installation and the release build) and tests/roots/msrv-trixie.sh
# (Debian 13's own rustc/cargo compile the crate and run the unit tests).
#
# A root is made once and cached under $ROOTS_DIR (target/roots, or $LEDA_CM_ROOTS_DIR);
# every run then works in a throw-away overlay on top of it (the upper dir in a temp dir
# under $ROOTS_DIR, removed on exit), so nothing one run installs is seen by the next.
# The Debian mirror is the one the machine's own apt configuration names, read at run time.
#
# Sourced by the scripts above; needs root (debootstrap, mount, chroot).

ROOTS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOTS_DIR=${LEDA_CM_ROOTS_DIR:-$ROOTS_REPO/target/roots}
ROOTS_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
ROOTS_IN=
ROOTS_RUN=

rlog() { printf '[roots] %s\n' "$*" >&2; }
rdie() { rlog "error: $*"; exit 1; }

roots_require_root() {
    [ "$(id -u)" = 0 ] || rdie "needs root (debootstrap, mount, chroot)"
    if ! command -v debootstrap >/dev/null; then
        rlog "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    [ -r "$ROOTS_KEYRING" ] || rdie "$ROOTS_KEYRING is missing (debian-archive-keyring)"
    trap roots_cleanup EXIT
    trap 'exit 130' INT TERM
}

# The machine's enabled apt entries for binary packages, one "URI SUITE COMPONENT..." a line,
# from sources.list and sources.list.d/*.list (one-line format) and *.sources (deb822).
roots_apt_entries() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" {
            sub(/^deb[ \t]+(\[[^]]*\][ \t]+)?/, "")
            print
        }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
        function flush(   i, j, u, s, n, m) {
            if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "" && suites != "") {
                n = split(uris, u, " "); m = split(suites, s, " ")
                for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j], comps
            }
            types = uris = suites = comps = ""; enabled = "yes"
        }
        BEGIN { enabled = "yes" }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
            key = tolower($1); sub(/:$/, "", key)
            val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "components") comps = val
            else if (key == "enabled") enabled = tolower(val)
        }
        END { flush() }' "$f"
    done
}

# The Debian mirror (its URI) that serves the machine's own release suite, e.g. the URI of
# the "bookworm" entry on a Debian 12 machine.
roots_mirror() {
    local codename uri
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || rdie "cannot tell the release of this machine from /etc/os-release"
    uri=$(roots_apt_entries | awk -v c="$codename" '$2 == c {print $1; exit}')
    [ -n "$uri" ] || rdie "no apt entry for suite $codename in /etc/apt: cannot tell the Debian mirror"
    echo "${uri%/}"
}

# roots_sources SUITE: the sources.list for a root of SUITE. The machine's own entries for
# SUITE and SUITE-* (updates, security) when it runs that release, else the mirror's SUITE.
roots_sources() {
    local suite=$1 lines
    lines=$(roots_apt_entries | awk -v s="$suite" '$2 == s || index($2, s "-") == 1 {print "deb " $0}')
    if [ -z "$lines" ]; then
        lines="deb $(roots_mirror) $suite main"
    fi
    printf '%s\n' "$lines"
}

# --- making and caching a root ------------------------------------------------------------
# roots_make NAME SUITE [PACKAGE...]: the cached root $ROOTS_DIR/NAME, made when missing or
# when its recipe (suite, packages) changed: debootstrap --variant=minbase from the machine's
# mirror, then the PACKAGEs through apt without recommends. Prints nothing; sets ROOT.
roots_make() {
    local name=$1 suite=$2; shift 2
    local dir=$ROOTS_DIR/$name recipe t0=$SECONDS mirror
    recipe="suite=$suite variant=minbase packages=$*"
    # shellcheck disable=SC2034 # for the caller
    ROOT=$dir
    if [ -f "$dir.done" ] && [ "$(cat "$dir.done")" = "$recipe" ] && [ -d "$dir/usr" ]; then
        rlog "$name root: cached ($dir)"
        return 0
    fi
    roots_assert_unmounted "$dir" "$dir.new"
    rm -rf "$dir" "$dir.new" "$dir.done"
    mkdir -p "$ROOTS_DIR"
    mirror=$(roots_mirror)
    rlog "$name root: debootstrap --variant=minbase $suite from the machine's mirror ($mirror)"
    debootstrap --variant=minbase --components=main --keyring="$ROOTS_KEYRING" \
        "$suite" "$dir.new" "$mirror" >"$ROOTS_DIR/$name.debootstrap.log" 2>&1 ||
        { tail -20 "$ROOTS_DIR/$name.debootstrap.log" >&2; rdie "debootstrap $suite failed (log: $ROOTS_DIR/$name.debootstrap.log)"; }
    roots_sources "$suite" >"$dir.new/etc/apt/sources.list"
    if (($#)); then
        rlog "$name root: apt-get install --no-install-recommends $*"
        roots_enter "$dir.new"
        roots_chroot bash -c 'export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null &&
            apt-get install -y -qq --no-install-recommends "$@" >/dev/null &&
            apt-get clean' apt "$@" || { roots_leave; rdie "installing $* in the $suite root failed"; }
        roots_leave
    fi
    rm -rf "$dir.new/var/lib/apt/lists/"* "$dir.new/var/cache/apt/"*.bin
    mv "$dir.new" "$dir"
    echo "$recipe" >"$dir.done"
    rlog "$name root: made in $((SECONDS - t0)) s ($(du -sm "$dir" | cut -f1) MB)"
}

# Refuses to go on when something is mounted under one of the paths (a run that was killed
# before its clean-up): removing the directory would reach into the mounted trees.
roots_assert_unmounted() {
    local p m
    for p in "$@"; do
        m=$(awk -v d="$p/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts)
        [ -z "$m" ] || rdie "still mounted under $p: $m (umount them first)"
    done
}

# --- entering a root ----------------------------------------------------------------------
# roots_enter DIR: mounts /proc, /sys, /dev in DIR, copies resolv.conf and stops package
# scripts from starting services. roots_leave undoes the mounts (and ends what still runs in
# DIR). ROOTS_IN is the root in use.
roots_enter() {
    ROOTS_IN=$1
    mount -t proc proc "$ROOTS_IN/proc"
    mount --rbind /sys "$ROOTS_IN/sys" && mount --make-rslave "$ROOTS_IN/sys"
    mount --rbind /dev "$ROOTS_IN/dev" && mount --make-rslave "$ROOTS_IN/dev"
    rm -f "$ROOTS_IN/etc/resolv.conf"
    cp -L /etc/resolv.conf "$ROOTS_IN/etc/resolv.conf"
    # No daemons from postinst scripts (containerd, mosquitto, ...): nothing may outlive the run.
    printf '#!/bin/sh\nexit 101\n' >"$ROOTS_IN/usr/sbin/policy-rc.d"
    chmod 755 "$ROOTS_IN/usr/sbin/policy-rc.d"
}

roots_leave() {
    local d=${ROOTS_IN:-} p r m
    [ -n "$d" ] || return 0
    # Processes started inside this root (e.g. a daemon a package started anyway), by PID.
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        case $r in "$d" | "$d"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
    done
    awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || rlog "warning: cannot unmount $m"
    done
    rm -f "$d/usr/sbin/policy-rc.d"
    ROOTS_IN=
}

# roots_overlay ROOT: a throw-away copy of the cached ROOT: an overlay whose upper dir is in a
# temp dir under $ROOTS_DIR, entered with roots_enter. Sets ROOTS_RUN (the temp dir) and
# ROOTS_MERGED; roots_cleanup (the EXIT trap that roots_require_root installs) unmounts
# everything and removes it.
roots_overlay() {
    local root=$1
    ROOTS_RUN=$(mktemp -d "$ROOTS_DIR/run.XXXXXX")
    mkdir -p "$ROOTS_RUN/upper" "$ROOTS_RUN/work" "$ROOTS_RUN/merged"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$ROOTS_RUN/upper,workdir=$ROOTS_RUN/work" \
        "$ROOTS_RUN/merged"
    ROOTS_MERGED=$ROOTS_RUN/merged
    roots_enter "$ROOTS_MERGED"
}

roots_cleanup() {
    local rc=$?
    roots_leave
    if [ -n "${ROOTS_RUN:-}" ]; then
        mountpoint -q "$ROOTS_RUN/merged" && { umount "$ROOTS_RUN/merged" || umount -l "$ROOTS_RUN/merged"; }
        if awk -v d="$ROOTS_RUN/" 'index($2 "/", d) == 1 {found = 1} END {exit !found}' /proc/mounts; then
            rlog "warning: still mounted under $ROOTS_RUN: not removed"
        else
            rm -rf "$ROOTS_RUN"
        fi
        ROOTS_RUN=
    fi
    return "$rc"
}

# roots_bind SRC DST [ro]: bind-mounts the host's SRC at DST inside the root in use.
roots_bind() {
    local src=$1 dst=$ROOTS_IN$2
    mkdir -p "$dst"
    mount --bind "$src" "$dst"
    [ "${3:-}" != ro ] || mount -o remount,bind,ro "$dst"
}

# roots_chroot COMMAND...: runs COMMAND in the root in use with a clean environment (HOME,
# PATH, LANG and the names in the ROOTS_ENV array, NAME=VALUE each).
roots_chroot() {
    chroot "$ROOTS_IN" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "${ROOTS_ENV[@]}" "$@"
}
ROOTS_ENV=()

# The host's CARGO_HOME: shared whole with the roots (downloaded crates, and cargo's own lock
# on them, so a build on the host at the same time cannot race a build in a root).
roots_cargo_home() {
    local h=${CARGO_HOME:-$HOME/.cargo}
    mkdir -p "$h"
    (cd "$h" && pwd)
}
