#!/usr/bin/env python3
"""Generate the committed corpus with REAL PyTorch 2.15.0.

    PY=$(bash oracle/setup.sh)
    $PY oracle/make_corpus.py corpus/                 # all scenarios
    $PY oracle/make_corpus.py corpus/ --only views dtypes
    $PY oracle/make_corpus.py --list

For every scenario `scenario_<name>` in oracle/scenarios.py a fresh child process is
started (isolation: scripting-time mangling counters, the class registry and the
concrete-type store are process-global), with
  * PYTHONHASHSEED=0 (the order of Final constants depends on it; the parent re-execs
    itself when it is not set),
  * the working directory = the repository root, and the oracle's own Python files loaded
    under *relative* file names (oracle/scenarios.py, oracle/pkgx/mods.py,
    oracle/tinymod.py), so the `.debug_pkl` records do not depend on the checkout path
    (PyTorch's own files, e.g. torch/nn/modules/linear.py, are still recorded with the
    absolute path of the venv),
  * torch.manual_seed(0) before the scenario runs.
Each written `<name>.pt` gets `<name>.json` = oracle/facts.py output for the written file.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import types
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORACLE_REL = os.path.relpath(HERE, ROOT)            # "oracle"
SCENARIOS_REL = os.path.join(ORACLE_REL, "scenarios.py")

MAX_FILE = 200 * 1024
MAX_TOTAL = 3 * 1024 * 1024


def scenario_names():
    with open(os.path.join(HERE, "scenarios.py"), encoding="utf-8") as f:
        return re.findall(r"^def scenario_(\w+)\(", f.read(), flags=re.M)


# ------------------------------------------------------------------------------- child

class Out:
    """Writes corpus files for one scenario (see scenarios.py docstring)."""

    def __init__(self, outdir):
        self.outdir = outdir
        self.written = []

    def path(self, name):
        return os.path.join(self.outdir, name + ".pt")

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def note(self, msg):
        sys.stderr.write("[note] %s\n" % msg)
        sys.stderr.flush()

    def emit(self, name, data, map_location_cpu=False):
        os.makedirs(os.path.dirname(self.path(name)), exist_ok=True)
        with open(self.path(name), "wb") as f:
            f.write(data)
        self.done_path(name, map_location_cpu=map_location_cpu)
        return data

    def done_path(self, name, map_location_cpu=False):
        import facts as factsmod
        p = self.path(name)
        with open(os.path.join(self.outdir, name + ".json"), "wb") as f:
            f.write(factsmod.dumps(factsmod.facts(p)).encode("utf-8"))
        if map_location_cpu:
            with open(os.path.join(self.outdir, name + ".map_location_cpu.json"), "wb") as f:
                f.write(factsmod.dumps(factsmod.facts(p, map_location="cpu")).encode("utf-8"))
        self.written.append(name)
        with open(p, "rb") as f:
            data = f.read()
        print("wrote %s.pt (%d bytes, sha256 %s)"
              % (name, len(data), hashlib.sha256(data).hexdigest()[:16]), flush=True)

    def save(self, m, name, to="buffer", extra_files=None, map_location_cpu=False):
        import torch
        kw = {} if extra_files is None else {"_extra_files": extra_files}
        if to == "path":
            torch.jit.save(m, self.path(name), **kw)
            self.done_path(name, map_location_cpu=map_location_cpu)
            return self.read(name)
        if to != "buffer":
            raise ValueError(to)
        buf = io.BytesIO()
        torch.jit.save(m, buf, **kw)
        return self.emit(name, buf.getvalue(), map_location_cpu=map_location_cpu)


def _load_rel(modname, relpath, package_dir=None):
    """Import `modname` from `relpath` (relative to cwd) keeping the relative file name."""
    # (importlib's spec_from_file_location would make the path absolute)
    mod = types.ModuleType(modname)
    mod.__file__ = relpath
    if package_dir is not None:
        mod.__path__ = [package_dir]
        mod.__package__ = modname
    else:
        mod.__package__ = modname.rpartition(".")[0]
    sys.modules[modname] = mod
    with open(relpath, encoding="utf-8") as f:
        src = f.read()
    exec(compile(src, relpath, "exec"), mod.__dict__)
    return mod


def run_child(name, outdir):
    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True
    os.chdir(ROOT)
    if HERE not in sys.path:
        sys.path.insert(0, HERE)                  # for `import facts`
    import torch

    torch.manual_seed(0)

    # helper modules with relative file names
    _load_rel("pkgx", os.path.join(ORACLE_REL, "pkgx", "__init__.py"),
              package_dir=os.path.join(ORACLE_REL, "pkgx"))
    _load_rel("pkgx.mods", os.path.join(ORACLE_REL, "pkgx", "mods.py"))
    sys.modules["pkgx"].mods = sys.modules["pkgx.mods"]
    _load_rel("tinymod", os.path.join(ORACLE_REL, "tinymod.py"))

    # scenarios.py executed as __main__ (qualified names __torch__.<Name>)
    with open(SCENARIOS_REL, encoding="utf-8") as f:
        src = f.read()
    main = types.ModuleType("__main__")
    main.__file__ = SCENARIOS_REL
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    torch.manual_seed(0)
    exec(compile(src, SCENARIOS_REL, "exec"), main.__dict__)

    torch.manual_seed(0)
    out = Out(outdir)
    main.__dict__["scenario_" + name](out)
    return 0


# ------------------------------------------------------------------------------ parent

def run_parent(outdir, only, jobs):
    names = scenario_names()
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            sys.exit("unknown scenario(s): %s (see --list)" % ", ".join(unknown))
        names = [n for n in names if n in only]
    os.makedirs(outdir, exist_ok=True)

    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    pending = list(names)
    running = {}
    results = {}
    t0 = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            n = pending.pop(0)
            p = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--child", n, outdir],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            running[n] = p
        for n, p in list(running.items()):
            if p.poll() is not None:
                so, se = p.communicate()
                results[n] = (p.returncode, so.decode("utf-8", "replace"),
                              se.decode("utf-8", "replace"))
                del running[n]
        time.sleep(0.05)

    failed = []
    for n in names:
        rc, so, se = results[n]
        print("== %s (rc %d)" % (n, rc))
        sys.stdout.write(so)
        notes = [l for l in se.splitlines() if l.startswith("[note]")]
        for l in notes:
            print("   " + l)
        if rc != 0:
            failed.append(n)
            sys.stdout.write(se)

    total = 0
    for fn in sorted(os.listdir(outdir)):
        if fn.endswith(".pt") or fn.endswith(".json"):
            sz = os.path.getsize(os.path.join(outdir, fn))
            total += sz
            if sz > MAX_FILE:
                print("WARNING: %s is %d bytes (> %d)" % (fn, sz, MAX_FILE))
    print("corpus total %d bytes in %s (%.1f s)" % (total, outdir, time.time() - t0))
    if total > MAX_TOTAL:
        print("WARNING: corpus total exceeds %d bytes" % MAX_TOTAL)
    if failed:
        print("FAILED scenarios: %s" % ", ".join(failed))
        return 1
    return 0


def main():
    import argparse

    ap = argparse.ArgumentParser(description="generate the ptconform corpus")
    ap.add_argument("outdir", nargs="?", help="output directory (e.g. corpus/)")
    ap.add_argument("--only", nargs="+", metavar="SCENARIO")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--child", metavar="SCENARIO", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.list:
        print("\n".join(scenario_names()))
        return 0

    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = "0"
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)

    if not args.outdir:
        ap.error("outdir is required")
    outdir = os.path.abspath(args.outdir)
    if args.child:
        return run_child(args.child, outdir)
    return run_parent(outdir, args.only, max(1, args.jobs))


if __name__ == "__main__":
    sys.exit(main())
