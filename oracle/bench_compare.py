#!/usr/bin/env python3
"""Times PyTorch and ptconform on the same archives, interleaved, median of N runs, and
prints the ratios (for the README's honest numbers on this machine).

    PY=$(bash oracle/setup.sh)
    PTCONFORM_BENCH_KEEP=/tmp/bench cargo bench --bench formats -- --test   # writes fixtures
    $PY oracle/bench_compare.py /tmp/bench/*.pt [--runs 5] [--ptconform target/release/ptconform]

For each archive: torch.jit.load (in this process, after a warm-up), torch.jit.save to a
file, and `ptconform inspect --json` / `ptconform roundtrip --out` (separate processes,
so their time includes process start; loads are memory-mapped).
"""
import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ptconform", default="target/release/ptconform")
    args = ap.parse_args()
    out = tempfile.mkdtemp()
    print("%-40s %12s %12s %8s %12s %12s %8s" % (
        "archive", "torch load", "ptc inspect", "ratio", "torch save", "ptc resave", "ratio"))
    for path in args.files:
        torch.jit.load(path)  # warm-up (imports, allocator)
        tl, pl, ts, ps = [], [], [], []
        for _ in range(args.runs):
            m = None

            def load():
                nonlocal m
                m = torch.jit.load(path)

            tl.append(timed(load))
            pl.append(timed(lambda: subprocess.run(
                [args.ptconform, "inspect", "--json", path], check=True, stdout=subprocess.DEVNULL)))
            ts.append(timed(lambda: torch.jit.save(m, os.path.join(out, "t.pt"))))
            ps.append(timed(lambda: subprocess.run(
                [args.ptconform, "roundtrip", path, "--out", os.path.join(out, "p.pt")],
                check=False, stdout=subprocess.DEVNULL)))
        med = statistics.median
        print("%-40s %10.1fms %10.1fms %7.1fx %10.1fms %10.1fms %7.1fx" % (
            os.path.basename(path), med(tl) * 1e3, med(pl) * 1e3, med(tl) / med(pl),
            med(ts) * 1e3, med(ps) * 1e3, med(ts) / med(ps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
