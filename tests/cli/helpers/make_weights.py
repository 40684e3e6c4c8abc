"""make_weights.py OUT POISON FINGERPRINT ROSTER: a safetensors file of the roster's cnn-small
model (its input and classes), the tensors `bundle open` holds every payload to, with the
trainer's "fingerprint" metadata; POISON 1 puts a NaN in."""
import json, re, struct, sys
out, poison, fp, roster = sys.argv[1], int(sys.argv[2]), sys.argv[3], open(sys.argv[4]).read()
h, w, c = (int(x) for x in re.search(r"input = \[(\d+), (\d+), (\d+)\]", roster).groups())
k = int(re.search(r"classes = (\d+)", roster).group(1))
shapes = {"conv1.weight": [32, c, 3, 3], "conv1.bias": [32], "conv2.weight": [64, 32, 3, 3],
          "conv2.bias": [64], "fc1.weight": [128, 64 * (h // 4) * (w // 4)], "fc1.bias": [128],
          "fc2.weight": [k, 128], "fc2.bias": [k]}
hdr, data, off = {"__metadata__": {"fingerprint": fp}}, b"", 0
for name in sorted(shapes):
    n = 1
    for d in shapes[name]:
        n *= d
    vals = [(i % 1000) * 0.001 for i in range(n)]
    if poison:
        vals[n // 2] = float("nan")
    blob = struct.pack("<%df" % n, *vals)
    hdr[name] = {"dtype": "F32", "shape": shapes[name], "data_offsets": [off, off + len(blob)]}
    data += blob
    off += len(blob)
h = json.dumps(hdr).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
open(out, "wb").write(struct.pack("<Q", len(h)) + h + data)
