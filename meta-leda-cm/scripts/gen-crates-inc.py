#!/usr/bin/env python3
"""Writes leda-cm-crates.inc (the recipe's crate:// list) from Cargo.lock.

    gen-crates-inc.py [--lock Cargo.lock] [--out FILE | --check FILE]

Every package of Cargo.lock except the workspace's own becomes
`crate://crates.io/NAME/VERSION` with `SRC_URI[NAME-VERSION.sha256sum]` from the lock
file's checksum: the names BitBake's crate fetcher and cargo.bbclass expect. A package
from anywhere but crates.io, or without a checksum, is an error: BitBake could neither
fetch nor verify it offline. `--check FILE` compares instead of writing (exit 1 when it
differs). Python 3.11+ standard library only (tomllib).
"""

import argparse
import sys
import tomllib
from pathlib import Path

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
HEADER = """\
# Generated from Cargo.lock by meta-leda-cm/scripts/gen-crates-inc.py: do not edit.
# Regenerate after every Cargo.lock change (CI fails when this file is out of date):
#   python3 meta-leda-cm/scripts/gen-crates-inc.py \\
#       --out meta-leda-cm/recipes-containers/leda-cm/leda-cm-crates.inc
"""


def render(lock_text: str) -> str:
    lock = tomllib.loads(lock_text)
    crates, errors = [], []
    for pkg in lock.get("package", []):
        name, version = pkg["name"], pkg["version"]
        source = pkg.get("source")
        if source is None:
            continue  # a workspace member (leda-cm itself)
        if source != CRATES_IO:
            errors.append(f"{name} {version}: source {source} is not crates.io")
        elif "checksum" not in pkg:
            errors.append(f"{name} {version}: no checksum in Cargo.lock")
        else:
            crates.append((name, version, pkg["checksum"]))
    if errors:
        raise ValueError("; ".join(errors))
    if not crates:
        raise ValueError("no crates.io package in Cargo.lock")
    crates.sort()
    out = [HEADER, 'SRC_URI += "\\']
    out += [f"    crate://crates.io/{n}/{v} \\" for n, v, _ in crates]
    out += ['"', ""]
    out += [f'SRC_URI[{n}-{v}.sha256sum] = "{c}"' for n, v, c in crates]
    return "\n".join(out) + "\n"


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock", type=Path, default=root / "Cargo.lock")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the .inc here")
    group.add_argument("--check", type=Path, help="compare with this .inc")
    args = ap.parse_args()
    try:
        text = render(args.lock.read_text())
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as e:
        print(f"error: {args.lock}: {e}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text(text)
        return 0
    try:
        current = args.check.read_text()
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if current != text:
        print(
            f"error: {args.check} is out of date with {args.lock}; run "
            f"meta-leda-cm/scripts/gen-crates-inc.py --out {args.check}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
