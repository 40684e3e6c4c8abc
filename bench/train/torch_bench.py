#!/usr/bin/env python3
"""PyTorch baseline for bench/train: the same architectures, batch and optimizer as the
engine's bench_train (SGD, momentum 0.9, lr 0.01, synthetic data), images/s after a warm-up.

Usage: torch_bench.py ARCH H W C BATCH [STEPS] [DEPTH] [DEVICE]   (DEVICE: cpu or cuda)
"""
import os
import sys
import time

import torch
import torch.nn as nn


class CnnSmall(nn.Module):
    """cwt cnn-small: tensor names match the engine's export."""

    def __init__(self, c, h, w, k):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 128)
        self.fc2 = nn.Linear(128, k)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class Block(nn.Module):
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
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """cwt resnet (see engine/model.c): depth 8 = CIFAR 16/32/64, 10/18 = ImageNet widths."""

    def __init__(self, depth, c, h, w, k, width=1.0):
        super().__init__()
        widths, blocks = ([16, 32, 64], 1) if depth == 8 else ([64, 128, 256, 512],
                                                                 1 if depth == 10 else 2)
        widths = [max(4, int(wd * width + 0.5)) for wd in widths]
        small = h * w <= 64 * 64
        self.conv1 = nn.Conv2d(c, widths[0], 3 if small else 7, 1 if small else 2,
                               1 if small else 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.pool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for s, wd in enumerate(widths):
            layer = []
            for b in range(blocks):
                layer.append(Block(cin, wd, 2 if s > 0 and b == 0 else 1))
                cin = wd
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
        self.nstages = len(widths)
        self.fc = nn.Linear(cin, k)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        for s in range(self.nstages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def main():
    a = sys.argv[1:]
    arch, h, w, c, batch = a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4])
    steps = int(a[5]) if len(a) > 5 else 20
    depth = int(a[6]) if len(a) > 6 else 8
    dev = a[7] if len(a) > 7 else "cpu"
    # CWT_BENCH_THREADS (bench/train/run.sh) sets both sides' threads; default all cores
    torch.set_num_threads(int(os.environ.get("CWT_BENCH_THREADS", "0")) or os.cpu_count())
    torch.manual_seed(1)
    model = CnnSmall(c, h, w, 10) if arch == "cnn-small" else ResNet(depth, c, h, w, 10)
    model = model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, c, h, w, device=dev) - 0.5
    y = torch.arange(batch, device=dev) % 10
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    if dev == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter() - t0
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} device={dev}")
    print(f"images_per_s={steps * batch / t:.1f}")


if __name__ == "__main__":
    main()
