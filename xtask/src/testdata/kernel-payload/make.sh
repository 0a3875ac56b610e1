#!/bin/sh
# Makes the kernel-payload test fixtures (xtask/src/bzimage.rs tests): a
# vmlinux cut down to test size, compressed by each tool as Linux's
# arch/x86/boot/compressed/Makefile and scripts/Makefile.lib call it.
#
# vmlinux.bin: a 64-bit ELF with the kernel's layout (a PT_LOAD at 16 MiB
# physical holding the first 6 KiB of a real Debian 6.1 kernel's .text, and
# a PT_NOTE with the Xen PVH entry note), followed by 256 bytes standing in
# for the relocation table the kernel appends. Each compressed file but the
# gzip one ends in the 4-byte little-endian uncompressed size, as the
# Makefile's *_with_size commands append it (gzip carries it as ISIZE).
#
# Usage: make.sh VMLINUX (an uncompressed x86-64 vmlinux; its .text is
# assumed to start at file offset 0x200000, as Debian's does).
# Tools: Debian's gzip, bzip2, xz-utils (lzma, xz), lzop, lz4, zstd.
set -eu
vmlinux=$1
python3 - "$vmlinux" <<'PY'
import struct, sys
text = open(sys.argv[1], "rb").read()[0x200000:0x200000 + 6144]
note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x1000000)
phoff, phnum = 64, 2
note_at = phoff + 56 * phnum
load_at = 0x200
hdr = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
hdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
load = struct.pack("<IIQQQQQQ", 1, 5, load_at, 0xffffffff81000000, 0x1000000, len(text), len(text), 0x200000)
pnote = struct.pack("<IIQQQQQQ", 4, 4, note_at, 0, 0, len(note), len(note), 4)
elf = hdr + load + pnote + note
elf += bytes(load_at - len(elf)) + text
relocs = bytes(range(256))
open("vmlinux.bin", "wb").write(elf + relocs)
PY
size() { python3 -c 'import os,struct,sys; sys.stdout.buffer.write(struct.pack("<I", os.path.getsize("vmlinux.bin")))'; }
gzip -n -f -9 <vmlinux.bin >vmlinux.bin.gz
{ bzip2 -9 <vmlinux.bin; size; } >vmlinux.bin.bz2
{ lzma -9 <vmlinux.bin; size; } >vmlinux.bin.lzma
{ xz --check=crc32 --x86 --lzma2=dict=32MiB <vmlinux.bin; size; } >vmlinux.bin.xz
{ lzop -9 -c <vmlinux.bin; size; } >vmlinux.bin.lzo
{ lz4 -l -9 -c <vmlinux.bin; size; } >vmlinux.bin.lz4
{ zstd -22 --ultra -c <vmlinux.bin; size; } >vmlinux.bin.zst
