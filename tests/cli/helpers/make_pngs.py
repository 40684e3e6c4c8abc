#!/usr/bin/env python3
"""Writes a small, linearly separable image set as 8-bit grey PNGs in class sub-folders.

usage: make_pngs.py OUTDIR PER_CLASS SEED [SIZE]

Class 0 has a bright block in the top-left quadrant, class 1 in the bottom-right, class 2
a bright horizontal bar in the middle; positions jitter and every pixel gets noise. Only the
standard library is used (zlib for the PNG stream), so the test needs no imaging package.
"""
import os
import random
import struct
import sys
import zlib


def png_bytes(width, height, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def image(cls, size, rng):
    rows = [[rng.randrange(0, 60) for _ in range(size)] for _ in range(size)]
    half = size // 2
    j = rng.randrange(0, 3)
    if cls == 0:
        box = (2 + j, half - 2 + j, 2 + j, half - 2 + j)
    elif cls == 1:
        box = (half + 1 - j, size - 2 - j, half + 1 - j, size - 2 - j)
    else:
        box = (half - 2 + j - 1, half + 2 + j - 1, 2, size - 2)
    y0, y1, x0, x1 = box
    for y in range(y0, y1):
        for x in range(x0, x1):
            rows[y][x] = rng.randrange(180, 256)
    return rows


def main():
    out, per_class, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 28
    rng = random.Random(seed)
    for cls in range(3):
        folder = os.path.join(out, str(cls))
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(folder, "img%04d.png" % i), "wb") as f:
                f.write(png_bytes(size, size, image(cls, size, rng)))


if __name__ == "__main__":
    main()
