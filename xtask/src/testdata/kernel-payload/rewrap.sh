#!/bin/sh
# Makes a vmlinuz of each compression Linux supports from one real bzImage,
# to boot each by hand (docs/testing.md, "Kernels as distros ship them"):
# unpacks its payload, recompresses it as arch/x86/boot/compressed/Makefile
# does, and puts it back in place of the old one with payload_length
# updated. Only the payload changes; under PVH the kernel starts at its
# vmlinux entry, so the bzImage's own decompressor never runs.
#
# Usage: rewrap.sh VMLINUZ OUTDIR (VMLINUZ compressed with xz or lz4).
# Tools: Debian's gzip, bzip2, xz-utils (lzma, xz), lzop, lz4, zstd.
set -eu
in=$1
out=$2
mkdir -p "$out"
python3 - "$in" "$out" <<'PY'
import struct, subprocess, sys
src, out = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
sects = b[0x1f1] or 4
prot = (sects + 1) * 512
off, length = struct.unpack_from("<II", b, 0x248)
start = prot + off
payload = b[start:start + length]
size = struct.unpack_from("<I", payload, length - 4)[0]
if payload.startswith(b"\xfd7zXZ\0"):
    raw = subprocess.run(["xz", "-dc", "--single-stream"], input=payload[:-4], capture_output=True, check=True).stdout
elif payload.startswith(b"\x02\x21\x4c\x18"):
    raw = subprocess.run(["lz4", "-dc"], input=payload[:-4], capture_output=True, check=True).stdout
else:
    sys.exit("rewrap.sh: only xz or lz4 payloads are unpacked")
assert len(raw) == size, (len(raw), size)
tools = {
    "gz": (["gzip", "-n", "-f", "-9"], False),
    "bz2": (["bzip2", "-9"], True),
    "lzma": (["lzma", "-9"], True),
    "xz": (["xz", "--check=crc32", "--x86", "--lzma2=dict=32MiB"], True),
    "lzo": (["lzop", "-9", "-c"], True),
    "lz4": (["lz4", "-l", "-9", "-c"], True),
    "zst": (["zstd", "-22", "--ultra", "-c"], True),
}
for suffix, (cmd, with_size) in tools.items():
    z = subprocess.run(cmd, input=raw, capture_output=True, check=True).stdout
    if with_size:
        z += struct.pack("<I", size)
    img = bytearray(b[:start] + z + b[start + length:])
    struct.pack_into("<I", img, 0x24c, len(z))
    name = f"{out}/vmlinuz.{suffix}"
    open(name, "wb").write(img)
    print(f"{name}: {len(img)} bytes, payload {len(z)}")
PY
