#!/usr/bin/env python3
"""Generate the committed corpus with REAL PyTorch 2.15.0.

    PY=$(bash oracle/setup.sh)
    $PY oracle/makers/make_corpus.py corpus/                 # all scenarios
    $PY oracle/makers/make_corpus.py corpus/ --only views dtypes
    $PY oracle/makers/make_corpus.py --list

For every scenario `scenario_<name>` in oracle/makers/scenarios.py a fresh child process is
started (isolation: scripting-time mangling counters, the class registry and the
concrete-type store are process-global), with
  * PYTHONHASHSEED=0 (the order of Final constants depends on it; the parent re-execs
    itself when it is not set),
  * the working directory = the repository root, and the makers' own Python files loaded
    under fixed *relative* file names (oracle/scenarios.py, oracle/pkgx/mods.py,
    oracle/tinymod.py: the names they had when the corpus was made, see recorded.py), so
    the `.debug_pkl` records depend neither on the checkout path nor on where the files
    live now (PyTorch's own files, e.g. torch/nn/modules/linear.py, are still recorded
    with the absolute path of the venv),
  * torch.manual_seed(0) before the scenario runs.
Each written `<name>.pt` gets `<name>.json` = oracle/peer/facts.py output for the written file.

Flatbuffer twins: after every `<name>.pt`, the scripted module object that torch.jit.save
wrote it from (found by the saved bytes: torch.jit.save, RecursiveScriptModule.save and
.save_to_buffer are wrapped to remember module, extra files and output) is also written with
`torch.jit.save_jit_module_to_flatbuffer(m, io.BytesIO(), _extra_files=<same>)` to
`<name>.ptl`, and `<name>.ptl.json` = `oracle/peer/facts.py <name>.ptl` run in a child process
(it may crash). A twin whose torch.jit.load fails or crashes, or whose modules / parameters
/ buffers differ from the zip twin's facts or from the in-memory module, is moved to
`flatbuffer_bugs/<name>.ptl` with `flatbuffer_bugs/<name>.ptl.json` describing what
PyTorch does with it (oracle/peer/fbprobe.py, one child process per probe). A module the
flatbuffer writer rejects gets no twin (an `[note] flatbuffer: ...` line says why).

Scenarios of oracle/makers/fb_scenarios.py (`scenario_fb_<test>`: ports of TestSaveLoadFlatbuffer;
`scenario_fbonly_<name>`: own) write only `.ptl` files, via out.save_ptl / out.emit_ptl,
with the same classification; their zip reference is a torch.jit.save of the same module
object to memory right after the flatbuffer save (not stored).
`--no-twins` skips the twins of the `.pt` files.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))            # oracle/makers
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(os.path.dirname(HERE), "peer")           # facts.py, fbprobe.py
PEER_REL = os.path.relpath(PEER, ROOT)                       # "oracle/peer"
SCENARIOS = os.path.join(HERE, "scenarios.py")

sys.path.insert(0, HERE)
import recorded  # noqa: E402  (the file names the corpus records: see recorded.py)

MAX_FILE = 200 * 1024
MAX_TOTAL = 3 * 1024 * 1024


FB_SCENARIOS = os.path.join(HERE, "fb_scenarios.py")
SCENARIO_FILES = (SCENARIOS, FB_SCENARIOS)


def scenario_files():
    """{scenario name: file defining it}, in file order."""
    res = {}
    for path in SCENARIO_FILES:
        with open(path, encoding="utf-8") as f:
            # `def scenario_<name>(out)`, or `scenario_<name> = functools.partial(...)`
            for n in re.findall(r"^(?:def )?scenario_(\w+)(?:\(| = )", f.read(), flags=re.M):
                if n in res:
                    raise SystemExit("scenario %s defined twice" % n)
                res[n] = path
    return res


def scenario_names():
    return list(scenario_files())


def _child_env():
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run_py(args, timeout=600):
    """Run the venv python on `args` from ROOT; (returncode, stdout, stderr)."""
    try:
        p = subprocess.run([sys.executable] + args, cwd=ROOT, env=_child_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, b"", b"timeout"
    return p.returncode, p.stdout, p.stderr


INVALID_MEMORY = ("reads invalid memory: PyTorch either raises 'isObject() INTERNAL ASSERT "
                  "FAILED ... Expected Object but got InvalidTag(<garbage>)' or dies with "
                  "SIGSEGV, differently from run to run")


def _stable(res):
    """Make a probe result independent of the run: hex addresses -> 0x?, and an
    out-of-bounds object read (an InvalidTag assertion or a SIGSEGV: which one happens
    varies between runs) -> {"ok": false, "invalid_memory": INVALID_MEMORY}."""
    if not isinstance(res, dict):
        return res
    if isinstance(res.get("children"), dict):
        return dict(res, children={k: _stable(v) for k, v in res["children"].items()})
    text = json.dumps(res)
    if res.get("signal") == "SIGSEGV" or "InvalidTag(" in text:
        return {"ok": False, "invalid_memory": INVALID_MEMORY}
    out = {}
    for k, v in res.items():
        if isinstance(v, str):
            v = re.sub(r"0x[0-9a-fA-F]+", "0x?", v)
        elif isinstance(v, dict):
            v = _stable(v)
        out[k] = v
    return out


def _exit_desc(rc, stderr):
    """JSON description of a child that did not exit 0."""
    import signal
    if rc is None:
        return {"ok": False, "timeout": True}
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = "signal %d" % -rc
        return {"ok": False, "signal": sig}
    lines = [l for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    return {"ok": False, "exit_status": rc, "stderr_last_line": lines[-1] if lines else ""}


# ------------------------------------------------------------------------------- child

class Out:
    """Writes corpus files for one scenario (see scenarios.py docstring)."""

    FB_WRITER = "torch.jit.save_jit_module_to_flatbuffer(m, io.BytesIO(), _extra_files=...)"

    def __init__(self, outdir, twins=True):
        self.outdir = outdir
        self.written = []
        self.twins = twins
        self.saves = []        # (bytes, module, extra_files) from the wrapped save calls
        self.zip_only_reference = set()   # ids of modules judged by their zip twin only

    # -- bookkeeping of zip saves (so each .pt can be matched with its module object)

    def record_save(self, data, m, extra_files):
        self.saves.append((bytes(data), m, None if extra_files is None else dict(extra_files)))

    def module_for(self, data):
        for d, m, extra in reversed(self.saves):
            if d == data:
                return m, extra
        return None

    def install_save_hooks(self):
        import torch
        out = self
        orig_save = torch.jit.save

        def save(m, f, *args, **kwargs):
            orig_save(m, f, *args, **kwargs)
            extra = args[0] if args else kwargs.get("_extra_files")
            if isinstance(f, (str, os.PathLike)):
                with open(f, "rb") as fh:
                    out.record_save(fh.read(), m, extra)
            elif hasattr(f, "getvalue"):
                out.record_save(f.getvalue(), m, extra)

        torch.jit.save = save
        torch.jit._serialization.save = save
        rsm = torch.jit.RecursiveScriptModule
        orig_m_save, orig_m_buffer = rsm.save, rsm.save_to_buffer

        def m_save(self_, f, **kwargs):
            r = orig_m_save(self_, f, **kwargs)
            with open(str(f), "rb") as fh:
                out.record_save(fh.read(), self_, kwargs.get("_extra_files"))
            return r

        def m_save_to_buffer(self_, *args, **kwargs):
            r = orig_m_buffer(self_, *args, **kwargs)
            out.record_save(r, self_, args[0] if args else kwargs.get("_extra_files"))
            return r

        rsm.save = m_save
        rsm.save_to_buffer = m_save_to_buffer

    # -- flatbuffers

    def ptl_path(self, name):
        return os.path.join(self.outdir, name + ".ptl")

    def flatbuffer_twin(self, name, data, map_location_cpu=False):
        """Write <name>.ptl from the module object <name>.pt was saved from."""
        import torch
        found = self.module_for(data)
        if found is None:
            self.note("flatbuffer: no twin for %s.pt: module object unknown" % name)
            return
        m, extra = found
        buf = io.BytesIO()
        try:
            torch.jit.save_jit_module_to_flatbuffer(m, buf, _extra_files=extra)
        except Exception as e:
            msg = [l for l in str(e).splitlines() if l.strip()]
            self.note("flatbuffer: cannot write %s.ptl: %s: %s"
                      % (name, type(e).__name__, msg[0] if msg else ""))
            return
        with open(os.path.join(self.outdir, name + ".json"), encoding="utf-8") as f:
            zip_facts = json.load(f)
        self.write_ptl(name, buf.getvalue(), m, how=self.FB_WRITER, zip_facts=zip_facts,
                       zip_ref=name + ".pt", map_location_cpu=map_location_cpu)

    def save_ptl(self, m, name, api="lite", extra_files=None, to="buffer"):
        """Save `m` as a flatbuffer with one of PyTorch's writers and write_ptl() it.

        api="lite": m._save_to_buffer_for_lite_interpreter(_use_flatbuffer=True, ...)
        api="jit":  torch.jit.save_jit_module_to_flatbuffer(m, BytesIO or path, ...)
        """
        import torch
        kw = {} if extra_files is None else {"_extra_files": extra_files}
        if api == "lite":
            if to != "buffer":
                raise ValueError(to)
            data = m._save_to_buffer_for_lite_interpreter(_use_flatbuffer=True, **kw)
            how = "m._save_to_buffer_for_lite_interpreter(_use_flatbuffer=True%s)" % (
                ", _extra_files=..." if kw else "")
        elif api == "jit":
            if to == "buffer":
                b = io.BytesIO()
                torch.jit.save_jit_module_to_flatbuffer(m, b, **kw)
                data = b.getvalue()
                how = "torch.jit.save_jit_module_to_flatbuffer(m, io.BytesIO())"
            else:
                import pathlib
                p = pathlib.Path(self.ptl_path(name))
                os.makedirs(str(p.parent), exist_ok=True)
                torch.jit.save_jit_module_to_flatbuffer(m, p, **kw)
                with open(str(p), "rb") as f:
                    data = f.read()
                how = "torch.jit.save_jit_module_to_flatbuffer(m, pathlib.Path(...))"
        else:
            raise ValueError(api)
        return self.emit_ptl(name, data, m, how=how)

    def emit_ptl(self, name, data, m, how):
        """write_ptl() with a zip reference: the facts of torch.jit.save(m) of the same
        module object, saved right after the flatbuffer (a zip save does not touch the
        mobile debug-handle counter; saving later, after clear_class_registry(), can crash).
        Set PTCONFORM_NO_ZIP_REF=1 to skip the reference (for checking that it does not
        change the .ptl bytes)."""
        import tempfile
        import torch
        import facts as factsmod
        data = bytes(data)
        zip_facts = None
        if os.environ.get("PTCONFORM_NO_ZIP_REF") != "1":
            with tempfile.TemporaryDirectory() as td:
                zp = os.path.join(td, "ref.pt")
                try:
                    b = io.BytesIO()
                    torch.jit.save(m, b)
                    with open(zp, "wb") as f:
                        f.write(b.getvalue())
                    zip_facts = factsmod.facts(zp)
                except Exception as e:
                    self.note("%s: no zip reference: %s: %s" % (name, type(e).__name__, e))
        return self.write_ptl(name, data, m, how=how, zip_facts=zip_facts,
                              zip_ref="torch.jit.save of the same module object (not stored)"
                              if zip_facts is not None else None)

    def judge_by_zip_twin(self, m):
        """The flatbuffer twin of `m` is compared with its zip twin's facts only: the
        Python wrapper of a frozen module lists only the root in named_modules(), while
        torch.jit.load of either file sees the submodules freezing kept."""
        self.zip_only_reference.add(id(m))
        return m

    def write_ptl(self, name, data, m, how, zip_facts=None, zip_ref=None,
                  map_location_cpu=False):
        """Write <name>.ptl (+ .ptl.json), or flatbuffer_bugs/<name>.ptl (+ .ptl.json)."""
        import facts as factsmod
        data = bytes(data)
        p = self.ptl_path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        expected = {
            "modules": [{"name": n, "type": mod._c.qualified_name}
                        for n, mod in m.named_modules()],
            "parameters": [factsmod.tensor_entry(n, t) for n, t in m.named_parameters()],
            "buffers": [factsmod.tensor_entry(n, t) for n, t in m.named_buffers()],
        }
        rc, so, se = _run_py([os.path.join(PEER_REL, "facts.py"), p])
        mismatch = {}
        got = None
        if rc == 0:
            got = json.loads(so.decode("utf-8"))
            names = lambda l: [e["name"] for e in l]  # noqa: E731
            if id(m) in self.zip_only_reference and zip_facts is not None:
                expected = {k: zip_facts[k] for k in ("modules", "parameters", "buffers")}
            if names(got["modules"]) != names(expected["modules"]):
                mismatch["module_names"] = {"saved": names(expected["modules"]),
                                            "loaded": names(got["modules"])}
            for key in ("parameters", "buffers"):
                if got[key] != expected[key]:
                    mismatch[key] = {"saved": expected[key], "loaded": got[key]}
            if zip_facts is not None:
                for key in ("modules", "parameters", "buffers"):
                    if got[key] != zip_facts[key]:
                        mismatch["zip_" + key] = {"zip": zip_facts[key],
                                                  "flatbuffer": got[key]}
        if rc == 0 and not mismatch:
            with open(p + ".json", "wb") as f:
                f.write(so)
            if map_location_cpu:
                rc2, so2, se2 = _run_py([os.path.join(PEER_REL, "facts.py"), p,
                                         "--map-location", "cpu"])
                if rc2 != 0:
                    raise RuntimeError("facts.py --map-location cpu failed on %s: %s"
                                       % (p, se2.decode("utf-8", "replace")[-500:]))
                with open(os.path.join(self.outdir, name + ".ptl.map_location_cpu.json"),
                          "wb") as f:
                    f.write(so2)
            self.written.append(name + ".ptl")
            print("wrote %s.ptl (%d bytes, sha256 %s) [%s]"
                  % (name, len(data), hashlib.sha256(data).hexdigest()[:16], how), flush=True)
            return data

        # -- a PyTorch flatbuffer that PyTorch itself cannot load faithfully
        bug_rel = os.path.join("flatbuffer_bugs", name + ".ptl")
        bp = os.path.join(self.outdir, bug_rel)
        os.makedirs(os.path.dirname(bp), exist_ok=True)
        os.replace(p, bp)
        for stale in (p + ".json", os.path.join(self.outdir, name + ".ptl.map_location_cpu.json")):
            if os.path.exists(stale):
                os.remove(stale)
        report = {
            "format": "flatbuffer",
            "file": bug_rel.replace(os.sep, "/"),
            "writer": how,
            "zip_reference": zip_ref,
            "saved": expected,
            "facts_py": {"ok": True} if rc == 0 else _exit_desc(rc, se),
            "mismatch": mismatch,
        }
        probes = [("module_info", "module_info"), ("torch_jit_load", "jit_load"),
                  ("torch_jit_load_forward_ones_2x2", "jit_forward"),
                  ("torch_jit_load_children_forward_ones_2x2", "jit_children_forward"),
                  ("lite_interpreter_load", "lite_load"),
                  ("lite_interpreter_forward_ones_2x2", "lite_forward"),
                  ("get_model_extra_files_from_buffer", "extra_files")]
        for key, mode in probes:
            prc, pso, pse = _run_py([os.path.join(PEER_REL, "fbprobe.py"), mode, bp])
            report[key] = _stable(json.loads(pso.decode("utf-8")) if prc == 0
                                  else _exit_desc(prc, pse))
        report["facts_py"] = _stable(report["facts_py"])
        with open(bp + ".json", "wb") as f:
            f.write(factsmod.dumps(report).encode("utf-8"))
        self.written.append(bug_rel)
        print("wrote %s (%d bytes, sha256 %s) [%s] -- PyTorch cannot load it faithfully"
              % (bug_rel, len(data), hashlib.sha256(data).hexdigest()[:16], how), flush=True)
        return data

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
        if self.twins:
            self.flatbuffer_twin(name, data, map_location_cpu=map_location_cpu)

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


def run_child(name, outdir, twins=True):
    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True
    os.chdir(ROOT)
    if PEER not in sys.path:
        sys.path.insert(0, PEER)                  # for `import facts`
    import torch

    torch.manual_seed(0)

    # helper modules, under their recorded file names
    recorded.load("pkgx", os.path.join(HERE, "pkgx", "__init__.py"),
                  package_dir=os.path.join(HERE, "pkgx"))
    recorded.load("pkgx.mods", os.path.join(HERE, "pkgx", "mods.py"))
    sys.modules["pkgx"].mods = sys.modules["pkgx.mods"]
    recorded.load("tinymod", os.path.join(HERE, "tinymod.py"))

    # the scenario file executed as __main__ (qualified names __torch__.<Name>); for a
    # scenario of fb_scenarios.py, scenarios.py first, in the same namespace (fb_scenarios.py
    # imports its shared ports from `scenarios`, this module)
    path = scenario_files()[name]
    main = recorded.new_main()
    torch.manual_seed(0)
    if path == FB_SCENARIOS:
        sys.modules["scenarios"] = main
        recorded.exec_into(main, SCENARIOS)
    recorded.exec_into(main, path)

    torch.manual_seed(0)
    out = Out(outdir, twins=twins and path == SCENARIOS)
    if out.twins:
        out.install_save_hooks()
    fn = main.__dict__["scenario_" + name]
    # inspect.getfile(a class) is the file of its module, __main__: the file whose code
    # defines the scenario's classes (for a functools.partial, the wrapped function's)
    main.__file__ = getattr(fn, "func", fn).__code__.co_filename
    fn(out)
    return 0


# ------------------------------------------------------------------------------ parent

def run_parent(outdir, only, jobs, twins=True):
    names = scenario_names()
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            sys.exit("unknown scenario(s): %s (see --list)" % ", ".join(unknown))
        names = [n for n in names if n in only]
    os.makedirs(outdir, exist_ok=True)

    env = _child_env()

    pending = list(names)
    running = {}
    results = {}
    t0 = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            n = pending.pop(0)
            p = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--child", n, outdir]
                + ([] if twins else ["--no-twins"]),
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
    for dirpath, _dirs, files in sorted(os.walk(outdir)):
        for fn in sorted(files):
            if fn.endswith((".pt", ".ptl", ".json")):
                full = os.path.join(dirpath, fn)
                sz = os.path.getsize(full)
                total += sz
                if sz > MAX_FILE:
                    print("WARNING: %s is %d bytes (> %d)"
                          % (os.path.relpath(full, outdir), sz, MAX_FILE))
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
    ap.add_argument("--no-twins", action="store_true",
                    help="do not write the flatbuffer twins (<name>.ptl) of the .pt files")
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
        return run_child(args.child, outdir, twins=not args.no_twins)
    return run_parent(outdir, args.only, max(1, args.jobs), twins=not args.no_twins)


if __name__ == "__main__":
    sys.exit(main())
