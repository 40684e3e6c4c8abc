#!/usr/bin/env python3
"""Writes a DICOM Part 10 file whose data set is DEPTH nested undefined-length sequences (each
level: an SQ element, an item, and at the end their delimiters: 36 bytes a level, so 6000
levels make the 216 KB file of issue 18, M4). DCMTK parses nesting recursively.

usage: nested_dicom.py OUT DEPTH [deflate | deflate-huge]

With "deflate" the data set is stored in the Deflated Explicit VR Little Endian transfer
syntax, which the pre-scan cannot read (it would have to inflate): DCMTK then meets the
nesting itself, in the decoder child. With "deflate-huge" the deflated data set is instead
one element declaring a value of 4 GB that is not there: DCMTK allocates a value before it
inflates it, so only the decoder child's address-space limit stands between such a file of
a few hundred bytes and 4 GB of memory.
"""
import struct
import sys
import zlib


def elem_explicit(group, elem, vr, value):
    if vr in (b"OB", b"SQ", b"UN", b"OW"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def uid(s):
    b = s.encode()
    return b + b"\0" if len(b) % 2 else b


def main():
    out, depth = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    deflate = mode.startswith("deflate")
    ts = "1.2.840.10008.1.2.1.99" if deflate else "1.2.840.10008.1.2.1"
    meta = (elem_explicit(2, 1, b"OB", b"\0\1") +
            elem_explicit(2, 2, b"UI", uid("1.2.840.10008.5.1.4.1.1.7")) +
            elem_explicit(2, 3, b"UI", uid("1.2.826.0.1.3680043.2.1143.1")) +
            elem_explicit(2, 0x10, b"UI", uid(ts)))
    meta = elem_explicit(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
    opening = (struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF) +
               struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF))
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    ds = opening * depth + closing * depth
    if mode == "deflate-huge":
        ds = struct.pack("<HH2sHI", 0x0009, 0x1001, b"OB", 0, 0xF0000000) + b"\0" * 64
    if deflate:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        ds = c.compress(ds) + c.flush()
    with open(out, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + meta + ds)


main()
