#!/usr/bin/env python3
"""Checks that the PyTorch module built by tests/cli/pytorch_load.py gives the probabilities
that `cwtctl predict --json` printed, for grey 8-bit PNGs written by make_pngs.py.

usage: compare_torch.py MODEL.safetensors PREDICT.json PNG...
"""
import json
import math
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pytorch_load  # noqa: E402  (the documented snippet)
import torch  # noqa: E402


def read_grey_png(path):
    """Only what make_pngs.py writes: 8-bit greyscale, filter type 0 on every row."""
    data = open(path, "rb").read()
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    rows = [raw[y * (width + 1) + 1:(y + 1) * (width + 1)] for y in range(height)]
    return torch.tensor([list(r) for r in rows], dtype=torch.uint8).reshape(height, width, 1)


def main():
    model, meta = pytorch_load.load(sys.argv[1])
    names = meta.get("class_names", "").split(",")
    predicted = [json.loads(line) for line in open(sys.argv[2])]
    assert len(predicted) == len(sys.argv[3:]) > 0, "one prediction per image expected"
    worst = 0.0
    for path, want in zip(sys.argv[3:], predicted):
        x = pytorch_load.preprocess(read_grey_png(path), meta).unsqueeze(0)
        with torch.no_grad():
            logp = torch.log_softmax(model(x), dim=1)[0]
        # Trained models are confident: compare log-probabilities, so that the small ones
        # count too (cwtctl prints 6 significant digits).
        for k, name in enumerate(names):
            got = math.log(max(want["probabilities"][name], 1e-38))
            worst = max(worst, abs(float(logp[k]) - got) / max(1.0, abs(got)))
    print("largest relative difference of log-probabilities: %.2e" % worst)
    assert worst < 1e-3, "PyTorch and cwt disagree by %g" % worst


if __name__ == "__main__":
    main()
