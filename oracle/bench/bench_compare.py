#!/usr/bin/env python3
"""Times PyTorch and ptconform on the same archives, interleaved, and prints medians and
ratios (for the README's honest numbers on this machine).

    PY=$(bash oracle/setup.sh)
    PTCONFORM_BENCH_KEEP=/tmp/bench cargo bench --bench formats -- --test   # writes fixtures
    cargo build --release --example timing
    $PY oracle/bench/bench_compare.py /tmp/bench/*.pt /tmp/bench/*.ptl [--runs 5]

Both sides are timed in-process, after one warm-up: PyTorch here (torch.jit.load of the
file; torch.jit.save to a file), ptconform in `examples/timing.rs` (jit::load from a
memory map, including dropping the module; zip_archive::save to a file). Each round
times PyTorch then ptconform, so machine noise hits both; the table shows the median of
the rounds. Save is timed for zip archives only (torch.jit.save writes zips), beside a
plain copy of the archive's bytes (`file copy`; `save/copy` is ptconform's save over it).

`--baseline OTHER_TIMING` also times another build of `examples/timing` (say, the commit
before a refactor) in the same rounds, interleaved with this one, and prints a second
table: load and save medians of both builds and their ratio (after / before; 1.00 is
no change).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


def timed_ms(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def ptconform_ms(timing, *args):
    out = subprocess.run([timing, *args, "3"], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timing", default="target/release/examples/timing")
    ap.add_argument("--baseline", help="another build's examples/timing, timed alongside")
    args = ap.parse_args()
    baseline = []
    out = tempfile.mkdtemp()
    print("%-28s %12s %12s %8s %12s %12s %8s %12s %9s" % (
        "archive", "torch load", "ptc load", "ratio", "torch save", "ptc save", "ratio",
        "file copy", "save/copy"))
    for path in args.files:
        is_zip = not path.endswith(".ptl")
        m = torch.jit.load(path)  # warm-up (imports, allocator)
        tl, pl, ts, ps, cp = [], [], [], [], []
        bl, bs = [], []
        for _ in range(args.runs):
            tl.append(timed_ms(lambda: torch.jit.load(path)))
            pl.append(ptconform_ms(args.timing, "load", path))
            if args.baseline:
                bl.append(ptconform_ms(args.baseline, "load", path))
                if is_zip:
                    bs.append(ptconform_ms(args.baseline, "save", path, os.path.join(out, "b.pt")))
            if is_zip:
                ts.append(timed_ms(lambda: torch.jit.save(m, os.path.join(out, "t.pt"))))
                ps.append(ptconform_ms(args.timing, "save", path, os.path.join(out, "p.pt")))
                # The floor for writing these bytes: a plain copy to a new file (shutil
                # uses copy_file_range/sendfile where it can; a copy over an existing file
                # is slower on ext4, which flushes a file truncated and rewritten).
                copy = os.path.join(out, "c.pt")
                if os.path.exists(copy):
                    os.unlink(copy)
                cp.append(timed_ms(lambda: shutil.copyfile(path, copy)))
        med = statistics.median
        save = ("%10.1fms %10.1fms %7.1fx %10.1fms %8.2fx" % (
            med(ts), med(ps), med(ts) / med(ps), med(cp), med(ps) / med(cp))) if is_zip else ""
        print("%-28s %10.1fms %10.2fms %7.1fx %s" % (
            os.path.basename(path), med(tl), med(pl), med(tl) / med(pl), save), flush=True)
        if args.baseline:
            baseline.append((os.path.basename(path), med(bl), med(pl),
                             med(bs) if bs else None, med(ps) if ps else None))
    if baseline:
        print("\n%-28s %12s %12s %8s %12s %12s %8s" % (
            "archive", "before load", "after load", "after/b", "before save", "after save",
            "after/b"))
        for name, bl_, al, bs_, as_ in baseline:
            save = ("%10.2fms %10.2fms %8.2f" % (bs_, as_, as_ / bs_)) if bs_ else ""
            print("%-28s %10.2fms %10.2fms %8.2f %s" % (name, bl_, al, al / bl_, save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
