#!/usr/bin/env python3
"""Run `forward` of generated modules with real PyTorch and compare with the values
ptconform's evaluator predicts (`ptconform::generator::method::evaluate`).

    python oracle/peer/gen_forward.py < jobs.json

stdin: a JSON list of jobs
    {"path": PATH, "loader": "jit" | "lite", "shape": [B, F], "input": [floats],
     "expected": [floats], "rtol": 1e-5, "atol": 1e-5}
Loaders:
    jit   torch.jit.load(path)  (compiles the TorchScript code: `code/` or `jit_sources`)
    lite  torch._C._load_for_lite_interpreter_from_buffer(bytes, None)  (runs the
          flatbuffer's mobile bytecode)
The input is torch.tensor(input, dtype=float32).reshape(shape).

stdout: a JSON list, one entry per job:
    {"status": "ok" | "mismatch", "shape": [...], "max_abs_diff": float, "got": [...]}
    {"status": "error", "detail": text}   loading or running raised
    {"status": "crash", "detail": why}    PyTorch died (each job runs in a forked child)
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forkrun import in_child  # noqa: E402


def run(job):
    x = torch.tensor(job["input"], dtype=torch.float32).reshape(job["shape"])
    if job["loader"] == "jit":
        m = torch.jit.load(job["path"])
        y = m(x)
    else:
        with open(job["path"], "rb") as f:
            m = torch._C._load_for_lite_interpreter_from_buffer(f.read(), None)
        y = m.forward((x,))
    if not isinstance(y, torch.Tensor):
        raise TypeError("forward returned %s" % type(y).__name__)
    y = y.detach()
    want = torch.tensor(job["expected"], dtype=torch.float32)
    got_flat = y.to(torch.float32).flatten()
    same_shape = list(y.shape) == list(job["shape"]) and y.dtype == torch.float32
    close = same_shape and got_flat.numel() == want.numel() and bool(torch.allclose(
        got_flat, want, rtol=job.get("rtol", 1e-5), atol=job.get("atol", 1e-5), equal_nan=True))
    diff = float((got_flat - want).abs().max()) if got_flat.numel() == want.numel() and want.numel() else 0.0
    return {"status": "ok" if close else "mismatch", "shape": list(y.shape),
            "dtype": str(y.dtype), "max_abs_diff": diff, "got": got_flat.tolist()}


def main():
    jobs = json.load(sys.stdin)
    out = []
    for job in jobs:
        status, value = in_child(lambda: run(job))
        if status == "ok":
            out.append(value)
        elif status == "exception":
            out.append({"status": "error", "detail": value})
        else:
            out.append({"status": "crash", "detail": value})
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
