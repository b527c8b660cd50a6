#!/usr/bin/env bash
# Crash-consistency suite (issue 16, item 6): N trials, each a scenario interrupted at a
# random point (leda-cm SIGKILLed during a multi-container apply over MQTT, `kanto-cm
# create`/`start` of several containers or `kanto-cm remove -f` of running ones; mosquitto
# or containerd stopped and started during an apply), then the invariants: converged, no
# orphans in containerd, nothing resurrected or lost, every state file parses, no temp files
# or empty record dirs. Runs under tests/harness/run (real containerd, mosquitto, registry).
#
#   tests/crash/run.sh [--trials N] [--seed S] [--trial K] [--scenarios a,b] [--power-cut]
#                      [--mixed] [--debug | --bin PATH] [--keep]
#
#   --trials N      number of trials (default 5); the benchmark mode is N >= 100
#   --seed S        the seed of the trial sequence (printed; default random)
#   --trial K       only trial K of the seed's sequence (to reproduce one)
#   --scenarios L   among apply,create,remove,broker,containerd (default all)
#   --power-cut     the kill scenarios also SIGKILL containerd, its shims and the containers
#   --mixed         each kill trial is a power cut or a plain SIGKILL of leda-cm, at random
#   --debug         use the debug build (default: release); --bin PATH: that binary
#   --keep          keep the work dir (always kept when a trial fails)
#
# Prints one line per trial and a summary; exits non-zero on any violation. tests/crash/crash.py
# does the work (see its docstring for what each invariant means precisely).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

profile=release bin='' keep=()
args=()
while (($#)); do
    case $1 in
    --debug) profile=debug; shift ;;
    --bin) bin=$2; shift 2 ;;
    --keep) keep=(--keep); args+=(--keep); shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
    esac
done

if [ -z "$bin" ]; then
    if [ "$profile" = release ]; then
        (cd "$top" && cargo build --release --quiet)
    else
        (cd "$top" && cargo build --quiet)
    fi
    bin=$top/target/$profile/leda-cm
fi
[ -x "$bin" ] || { echo "no leda-cm binary at $bin" >&2; exit 1; }

# Debian's python3 (the harness installs it), whatever else is first in PATH.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
exec "$top/tests/harness/run" "${keep[@]}" -- "$py" "$here/crash.py" --bin "$bin" "${args[@]}"
