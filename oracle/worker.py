#!/usr/bin/env python3
"""The PyTorch side of `ptconform conform`: a long-lived worker (PyTorch is imported
once) answering one JSON request per stdin line with one JSON line on stdout.

Request:  {"path": FILE, "forward": null | {"shape": [B, F], "values": [...]},
           "resave_dir": DIR | null, "timeout": seconds, "memory_mb": N}
Response: {"ok": true, "facts": {...}                      # oracle/facts.py facts
           "forward": {"jit": [...], "lite": [...]}          # flattened float outputs
           "resaved": {"zip": PATH, "flatbuffer": PATH}}     # torch.jit.save / flatbuffer
       or {"ok": false, "error": "Type: message"}           # PyTorch raised
       or {"ok": false, "crash": "killed by signal 11"}     # PyTorch died
       or {"ok": false, "hang": true}                       # no answer within the timeout

Every request runs in a forked child with an address-space limit, so a crash, a hang or
memory exhaustion in PyTorch is a finding reported back, and the worker keeps serving.
"""
import json
import os
import resource
import signal
import sys
import warnings

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

import facts as factsmod  # noqa: E402


def flat(v):
    if isinstance(v, torch.Tensor):
        return [float(x) for x in v.detach().flatten().tolist()]
    raise TypeError("forward returned %s, not a Tensor" % type(v).__name__)


def handle(req):
    path = req["path"]
    res = {"ok": True, "facts": factsmod.facts(path)}
    fwd = req.get("forward")
    if fwd is not None:
        x = torch.tensor(fwd["values"], dtype=torch.float32).reshape(fwd["shape"])
        out = {}
        m = torch.jit.load(path)
        out["jit"] = flat(m(x))
        if factsmod.is_flatbuffer(path):
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
    return res


def in_child(req):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        mb = req.get("memory_mb")
        if mb:
            resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
        try:
            data = json.dumps(handle(req))
        except MemoryError:
            data = json.dumps({"ok": False, "error": "MemoryError", "memory": True})
        except BaseException as e:  # noqa: BLE001 - everything is a report
            lines = str(e).strip().splitlines()
            data = json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, lines[-1] if lines else "")})
        with os.fdopen(w, "wb") as f:
            f.write(data.encode())
        os._exit(0)
    os.close(w)
    timeout = req.get("timeout", 60)

    def on_alarm(signum, frame):
        raise TimeoutError

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(timeout))
    try:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        signal.alarm(0)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"ok": False, "hang": True}
    if os.WIFSIGNALED(status):
        return {"ok": False, "crash": "killed by signal %d" % os.WTERMSIG(status)}
    if not data:
        return {"ok": False, "crash": "exit status %d" % os.WEXITSTATUS(status)}
    return json.loads(data)


def main():
    torch.manual_seed(0)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            res = in_child(json.loads(line))
        except Exception as e:  # a bad request: say so, keep serving
            res = {"ok": False, "error": "worker: %s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
