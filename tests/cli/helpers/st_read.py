"""Reads safetensors files in the shell tests' Python checks (daemon_finetune.sh,
daemon_init.sh): import it from tests/cli/helpers."""
import json
import struct


def f32_tensors(path):
    """The F32 tensors of the safetensors file at path: {name: raw little-endian bytes}
    (the __metadata__ entry and tensors of other dtypes left out)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in h.items() if k != "__metadata__" and v["dtype"] == "F32"}
