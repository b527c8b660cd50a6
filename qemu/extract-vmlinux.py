#!/usr/bin/env python3
"""Unpacks an x86 bzImage into its ELF vmlinux (QEMU boots it through the PVH entry point,
which saves the in-guest decompression: about twice as fast under TCG).

    extract-vmlinux.py BZIMAGE OUT

The compressed payload is located by the boot protocol's setup header (payload_offset and
payload_length, protocol >= 2.08) and decompressed with the format its magic names."""
import lzma
import shutil
import struct
import subprocess
import sys
import zlib


def main(src: str, out: str) -> None:
    data = open(src, "rb").read()
    if data[0x202:0x206] != b"HdrS":
        sys.exit(f"{src}: not a bzImage (no HdrS setup header)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < 0x208:
        sys.exit(f"{src}: boot protocol {version:#x} has no payload fields")
    setup_sects = data[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    payload = data[pm_start + payload_offset : pm_start + payload_offset + payload_length]
    # The kernel build appends the uncompressed size (4 bytes) to the stream: decompress
    # the first stream only.
    if payload[:2] == b"\x1f\x8b":
        elf = zlib.decompressobj(wbits=31).decompress(payload)
    elif payload[:6] == b"\xfd7zXZ\x00":
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload[:3] == b"\x5d\x00\x00":
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    elif payload[:4] == b"\x28\xb5\x2f\xfd":
        if not shutil.which("zstd"):
            sys.exit("zstd is needed to unpack this kernel")
        elf = subprocess.run(["zstd", "-dc"], input=payload[:-4], stdout=subprocess.PIPE, check=True).stdout
    else:
        sys.exit(f"{src}: unknown payload compression {payload[:6].hex()}")
    if elf[:4] != b"\x7fELF":
        sys.exit(f"{src}: the payload is not an ELF image")
    with open(out, "wb") as f:
        f.write(elf)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: extract-vmlinux.py BZIMAGE OUT")
    main(sys.argv[1], sys.argv[2])
