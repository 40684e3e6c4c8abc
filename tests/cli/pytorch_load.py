#!/usr/bin/env python3
"""Loads a `cwtctl model export` file into an equivalent PyTorch module.

This is the snippet of docs/model-export.md (keep the two identical). It needs only PyTorch:
the safetensors file is read with the standard library.

usage: pytorch_load.py MODEL.safetensors
"""
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    """Returns ({name: tensor}, {metadata key: value})."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    meta = header.pop("__metadata__", {})
    base = 8 + header_len
    tensors = {}
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        flat = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtypes[t["dtype"]])
        tensors[name] = flat.reshape(t["shape"])
    return tensors, meta


class CnnSmall(nn.Module):
    def __init__(self, h, w, c, classes, dropout):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 128)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.drop(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """depth 8: three stages 16/32/64 (CIFAR); 10 and 18: four stages 64..512 (ImageNet)."""

    def __init__(self, depth, width, h, w, c, classes):
        super().__init__()
        widths, blocks = ([16, 32, 64], 1) if depth == 8 else ([64, 128, 256, 512],
                                                               1 if depth == 10 else 2)
        widths = [min(4096, max(4, int(b * width + 0.5))) for b in widths]
        small = h * w <= 64 * 64
        self.conv1 = nn.Conv2d(c, widths[0], 3 if small else 7, 1 if small else 2,
                               1 if small else 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.pool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for s, cout in enumerate(widths):
            layer = []
            for b in range(blocks):
                layer.append(BasicBlock(cin, cout, 2 if s > 0 and b == 0 else 1))
                cin = cout
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layer))
        self.n_stages = len(widths)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        for s in range(self.n_stages):
            x = getattr(self, "layer%d" % (s + 1))(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def load(path):
    """Returns (module in eval mode, metadata). Optimizer state (optim.*) is skipped."""
    tensors, meta = read_safetensors(path)
    h, w, c = (int(v) for v in meta["input"].split("x"))
    classes = int(meta["classes"])
    if meta["arch"] == "cnn-small":
        model = CnnSmall(h, w, c, classes, float(meta["dropout"]))
    else:
        model = ResNet(int(meta["depth"]), float(meta["width"]), h, w, c, classes)
    state = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    model.load_state_dict(state)  # strict: every tensor of the module, nothing else
    return model.eval(), meta


def preprocess(hwc_uint8, meta):
    """uint8 HWC image of the model's input size -> normalised float CHW tensor."""
    mean = torch.tensor([float(v) for v in meta["norm_mean"].split(",")]).view(-1, 1, 1)
    std = torch.tensor([float(v) for v in meta["norm_std"].split(",")]).view(-1, 1, 1)
    x = torch.as_tensor(hwc_uint8).permute(2, 0, 1).float() / 255.0
    return (x - mean) / std


if __name__ == "__main__":
    net, info = load(sys.argv[1])
    print(info["arch"], info["input"], "classes:", info.get("class_names", info["classes"]))
    print(sum(p.numel() for p in net.parameters()), "parameters")
