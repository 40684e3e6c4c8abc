#!/usr/bin/python3
"""Writes small test images with the standard library only (no PIL): PNG through zlib,
24-bit BMP (turned into JPEG by the calling test with DCMTK's img2dcm + dcmj2pnm), and IDX
files. Every image is distinct, derived from its seed.

usage: make_images.py png PATH W H CHANNELS SEED
       make_images.py bmp PATH W H SEED
       make_images.py idx IMAGES LABELS N H W CLASSES SEED [gz]
"""
import gzip
import random
import struct
import sys
import zlib


def pixels(w, h, c, seed):
    return bytes(((x * 7 + y * 13 + k * 31 + seed * 17) ^ (seed * 5)) & 0xFF
                 for y in range(h) for x in range(w) for k in range(c))


def png(path, w, h, c, seed):
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    data = pixels(w, h, c, seed)
    raw = b"".join(b"\0" + data[y * w * c:(y + 1) * w * c] for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    out = (b"\x89PNG\r\n\x1a\n" +
           chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(out)


def bmp(path, w, h, seed):
    data = pixels(w, h, 3, seed)
    pad = (4 - (w * 3) % 4) % 4
    rows = [data[y * w * 3:(y + 1) * w * 3] + b"\0" * pad for y in range(h)]
    body = b"".join(reversed(rows))
    hdr = struct.pack("<2sIHHI", b"BM", 54 + len(body), 0, 0, 54)
    hdr += struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    with open(path, "wb") as f:
        f.write(hdr + body)


def idx(images, labels, n, h, w, classes, seed, gz):
    opener = gzip.open if gz else open
    with opener(images, "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w))
        f.write(random.Random(seed).randbytes(n * h * w))
    with opener(labels, "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n))
        f.write(bytes(i % classes for i in range(n)))


def main(argv):
    kind = argv[1]
    if kind == "png":
        png(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), int(argv[6]))
    elif kind == "bmp":
        bmp(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    elif kind == "idx":
        idx(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]),
            int(argv[8]), len(argv) > 9 and argv[9] == "gz")
    else:
        sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main(sys.argv)
