"""Synthetic bar images as IDX files, for the daemon tests' make_data (daemon_best_decline.sh,
daemon_fed_norm.sh, daemon_visit_carry.sh): import it from tests/cli/helpers."""
import struct

SIDE = 16


def bar_image(rng, k, noise, width, bar):
    """A SIDE x SIDE grey image (a list of ints, row-major) of class k: every pixel
    rng.randrange(*noise), then a vertical bar of width columns from column k, each of its
    pixels rng.randrange(*bar). Draws from rng in that order, so a seed repeats the image."""
    img = [rng.randrange(*noise) for _ in range(SIDE * SIDE)]
    for r in range(SIDE):
        for c in range(k, k + width):
            img[r * SIDE + c] = rng.randrange(*bar)
    return img


def write_idx(out, split, pixels, labels):
    """Writes OUT/SPLIT-images (IDX3, SIDE x SIDE, pixels: bytes of every image in turn) and
    OUT/SPLIT-labels (IDX1, one byte per image)."""
    count = len(labels)
    with open("%s/%s-images" % (out, split), "wb") as f:
        f.write(struct.pack(">IIII", 2051, count, SIDE, SIDE) + bytes(pixels))
    with open("%s/%s-labels" % (out, split), "wb") as f:
        f.write(struct.pack(">II", 2049, count) + bytes(labels))


def bar_splits(out, rng, counts, label, noise, width, bar, pixel=lambda v: v):
    """For each (split, count) of counts, count images written with write_idx: image i has
    class label(i) (called first, so it may draw from rng) and is bar_image(rng, that class,
    noise, width, bar) with every pixel v stored as pixel(v) (an int in 0..255)."""
    for split, count in counts:
        pixels, labels = bytearray(), bytearray()
        for i in range(count):
            k = label(i)
            pixels += bytes(pixel(v) for v in bar_image(rng, k, noise, width, bar))
            labels.append(k)
        write_idx(out, split, pixels, labels)
