#!/usr/bin/env python3
"""The PyTorch side of `ptconform conform`: a long-lived worker (PyTorch is imported
once) answering one JSON request per stdin line with one JSON line on stdout.

Request:  {"path": FILE, "forward": null | {"shape": [B, F], "values": [...]},
           "resave_dir": DIR | null, "timeout": seconds, "memory_mb": N,
           "imports": [MODULE, ...]}   # optional: imported once, in the worker itself,
                                       # when installed (torchvision's ops for detection
                                       # models); a missing one is skipped
Response: {"ok": true, "facts": {...}                      # oracle/peer/facts.py facts
           "forward": {"jit": [...], "lite": [...]}          # flattened float outputs
           "resaved": {"zip": PATH, "flatbuffer": PATH,      # torch.jit.save / flatbuffer
                       "mobile_zip": PATH}}                  # (a mobile zip's) lite save
       or {"ok": false, "error": "Type: message"}           # PyTorch raised
       or {"ok": false, "crash": "killed by signal 11"}     # PyTorch died
       or {"ok": false, "hang": true}                       # no answer within the timeout

Every request runs in a forked child with an address-space limit, so a crash, a hang or
memory exhaustion in PyTorch is a finding reported back, and the worker keeps serving.
"""
import json
import os
import zipfile
import sys
import warnings

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

import facts as factsmod  # noqa: E402
from forkrun import in_child  # noqa: E402


def flat(v):
    if isinstance(v, torch.Tensor):
        return [float(x) for x in v.detach().flatten().tolist()]
    raise TypeError("forward returned %s, not a Tensor" % type(v).__name__)


def is_mobile_zip(path):
    """A zip archive with `bytecode.pkl` (what `_save_for_lite_interpreter` writes)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 1)[-1] == "bytecode.pkl" for n in zf.namelist())


def handle(req):
    path = req["path"]
    res = {"ok": True, "facts": factsmod.facts(path)}
    fwd = req.get("forward")
    if fwd is not None:
        x = torch.tensor(fwd["values"], dtype=torch.float32).reshape(fwd["shape"])
        out = {}
        m = torch.jit.load(path)
        out["jit"] = flat(m(x))
        if factsmod.is_flatbuffer(path) or is_mobile_zip(path):
            with open(path, "rb") as f:
                lite = torch._C._load_for_lite_interpreter_from_buffer(f.read(), None)
            out["lite"] = flat(lite.forward((x,)))
        res["forward"] = out
    d = req.get("resave_dir")
    if d:
        m = torch.jit.load(path)
        zpath = os.path.join(d, "pytorch_resave.pt")
        with open(zpath, "wb") as f:
            import io
            buf = io.BytesIO()
            torch.jit.save(m, buf)
            f.write(buf.getvalue())
        fpath = os.path.join(d, "pytorch_resave.ptl")
        try:
            torch.jit.save_jit_module_to_flatbuffer(m, fpath)
            res["resaved"] = {"zip": zpath, "flatbuffer": fpath}
        except Exception as e:  # e.g. meta tensors: PyTorch cannot write them
            res["resaved"] = {"zip": zpath, "flatbuffer_error": "%s: %s" % (type(e).__name__, e)}
        if is_mobile_zip(path):
            mpath = os.path.join(d, "pytorch_resave.mobile.pt")
            m._save_for_lite_interpreter(mpath)
            res["resaved"]["mobile_zip"] = mpath
    return res


def run_request(req):
    status, value = in_child(lambda: handle(req), timeout=req.get("timeout", 60),
                             memory_mb=req.get("memory_mb"))
    if status == "ok":
        return value
    if status == "hang":
        return {"ok": False, "hang": True}
    if status == "crash":
        return {"ok": False, "crash": value}
    if status == "memory":
        return {"ok": False, "error": value, "memory": True}
    return {"ok": False, "error": value}

IMPORTED = set()


def ensure_imports(names):
    for name in names or []:
        if name in IMPORTED:
            continue
        IMPORTED.add(name)
        try:
            __import__(name)
        except Exception:
            pass


def main():
    torch.manual_seed(0)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            ensure_imports(req.get("imports"))
            res = run_request(req)
        except Exception as e:  # a bad request: say so, keep serving
            res = {"ok": False, "error": "worker: %s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
