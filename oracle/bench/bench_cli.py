#!/usr/bin/env python3
"""Times the ptconform CLI as users run it, a whole process per command, against
torch.jit.load of the same file in this process (PyTorch's import not counted), in one
interleaved run: each round runs every command once per file, PyTorch first, so machine
noise hits both sides. Prints medians, the ratio to torch.jit.load and the child's peak
RSS (from /usr/bin/time, in the warm-up round).

    PY=$(bash oracle/setup.sh)
    PTCONFORM_BENCH_KEEP=/tmp/bench cargo bench --bench formats -- --test   # (a) (b) (c)
    cargo build --release --bin ptconform --example floor
    $PY oracle/bench/bench_cli.py /tmp/bench/{a_64_linear_1024,b_500_classes,c_5000_buffers}.{pt,ptl} \\
        [corpus/models/*.pt] [--runs 5] [--bin target/release/ptconform] [--json OUT]

Commands per file: inspect, inspect --json, check, dump, roundtrip, diff FILE FILE (the
file against itself), convert --format zip (into a temporary directory), and
info for flatbuffers. `dump` and `diff` hash every tensor byte with SHA-256 and `check`
computes every record's CRC-32: the rows `floor crc32` and `floor sha256` time one pass of
each over the whole file, on one thread, in a process of its own (examples/floor.rs, when
built next to the binary).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def peak_rss_kib(argv, tmp):
    """The child's peak RSS, measured by /usr/bin/time: a child of this process would
    count the resident pages it was spawned from (PyTorch's few hundred MiB) in its peak,
    a child of `time` starts small."""
    report = os.path.join(tmp, "rss")
    run_child(["/usr/bin/time", "-f", "%M", "-o", report] + argv)
    with open(report) as f:
        return int(f.read().split()[-1])


def run_child(argv):
    """Wall seconds, peak RSS as wait4 reports it (see peak_rss_kib) and exit code of one
    child process, spawned with posix_spawn; its output is discarded."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    os.close(devnull)
    return wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def commands(binary, path, tmp):
    fb = path.endswith(".ptl")
    # A torch.jit.save archive has no bytecode to make a flatbuffer of: both convert to zip.
    other = os.path.join(tmp, "converted.pt")
    resaved = os.path.join(tmp, "resaved" + (".ptl" if fb else ".pt"))
    out = [
        ("inspect", [binary, "inspect", path]),
        ("inspect --json", [binary, "inspect", "--json", path]),
        ("check", [binary, "check", path]),
        ("dump", [binary, "dump", path]),
        ("diff", [binary, "diff", path, path]),
        ("roundtrip", [binary, "roundtrip", path, "--out", resaved]),
        ("convert", [binary, "convert", path, other, "--format", "zip"]),
    ]
    if fb:
        out.insert(3, ("info", [binary, "info", path]))
    floor = os.path.join(os.path.dirname(binary), "examples", "floor")
    if os.path.exists(floor):
        out += [("floor crc32", [floor, "crc32", path]), ("floor sha256", [floor, "sha256", path])]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release/ptconform")
    ap.add_argument("--json", help="write the table as JSON here too")
    args = ap.parse_args()
    import torch  # noqa: E402 (timed loads only; the import is not part of any number)

    binary = os.path.abspath(args.bin)
    times = {}  # (file, command) -> [seconds]
    rss = {}
    codes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.files:  # warm-up: page cache, PyTorch's lazy initialisation
            torch.jit.load(path)
            for name, argv in commands(binary, path, tmp):
                rss[(path, name)] = peak_rss_kib(argv, tmp)
        for _ in range(args.runs):
            for path in args.files:
                start = time.perf_counter()
                m = torch.jit.load(path)
                del m
                times.setdefault((path, "torch.jit.load"), []).append(time.perf_counter() - start)
                for name, argv in commands(binary, path, tmp):
                    wall, _, code = run_child(argv)
                    times.setdefault((path, name), []).append(wall)
                    codes[(path, name)] = code
    rows = []
    for path in args.files:
        base = statistics.median(times[(path, "torch.jit.load")])
        rows.append((path, "torch.jit.load", base, None, None, None))
        for name, _ in commands(binary, path, "/tmp"):
            med = statistics.median(times[(path, name)])
            rows.append((path, name, med, base / med, rss[(path, name)], codes[(path, name)]))
    print(f"{'file':<34} {'command':<16} {'median ms':>10} {'torch/cmd':>10} {'peak RSS MiB':>13} exit")
    for path, name, med, ratio, kib, code in rows:
        r = "" if ratio is None else f"{ratio:.1f}x"
        m = "" if kib is None else f"{kib / 1024:.1f}"
        c = "" if code is None else str(code)
        print(f"{os.path.basename(path):<34} {name:<16} {med * 1000:>10.1f} {r:>10} {m:>13} {c}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(file=p, command=n, median_s=t, ratio=r, peak_rss_kib=k, exit=c)
                       for p, n, t, r, k, c in rows], f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
