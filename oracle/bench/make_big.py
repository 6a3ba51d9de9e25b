#!/usr/bin/env python3
"""Writes large PyTorch-made archives for measurements (not committed: too big).

    python oracle/bench/make_big.py OUT.pt [--layers 64] [--width 1024]

Default: ModuleList of 64 Linear(1024, 1024) float32 = 256 MiB of parameters, the
spec's benchmark case (a).
"""
import argparse
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


class Big(torch.nn.Module):
    def __init__(self, layers, width):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(layers)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--width", type=int, default=1024)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Big(a.layers, a.width)), a.out)


if __name__ == "__main__":
    main()
