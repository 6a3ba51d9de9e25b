#!/usr/bin/env python3
"""Run `forward` of a reference module and of a candidate (written by ptconform) with
real PyTorch and say whether the outputs agree.

    python oracle/peer/fb_forward.py < jobs.json

stdin: a JSON list of jobs
    {"reference": PATH, "ref_attr": "", "candidate": PATH, "cand_attr": "",
     "loaders": ["jit", "lite"]}
`reference` may be a list of paths: their forwards are applied in turn (x -> m1 -> m2).
`*_attr` names a submodule (dotted) whose forward is run instead of the root's; the lite
interpreter has no submodules, so it is only used with empty attrs. Loaders:
    jit   torch.jit.load(path)
    lite  torch._C._load_for_lite_interpreter_from_buffer(bytes, None) (flatbuffers)

stdout: a JSON list, one entry per job: {loader: result}, result one of
    {"equal": bool, "input": description, "reference": ..., "candidate": ...}
    {"skipped": why}       the reference's forward accepts none of the fixed inputs
    {"error": text}        the candidate failed to load or run where the reference ran
    {"crash": why}         PyTorch died on the candidate (every run is in a forked child;
                           a reference that crashes PyTorch is reported as skipped)
The fixed inputs (tried in order until the reference's forward accepts one):
ones(2, 2), ones(4, 4), ones(1, 4), ones(3), arange(6.).reshape(2, 3), no argument.
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forkrun import in_child  # noqa: E402


def inputs():
    return [
        ("ones(2, 2)", (torch.ones(2, 2),)),
        ("ones(4, 4)", (torch.ones(4, 4),)),
        ("ones(1, 4)", (torch.ones(1, 4),)),
        ("ones(3)", (torch.ones(3),)),
        ("arange(6.).reshape(2, 3)", (torch.arange(6.0).reshape(2, 3),)),
        ("()", ()),
    ]


def encode(v):
    """A full, comparable JSON form of a forward() result."""
    if isinstance(v, torch.Tensor):
        v = v.detach()
        if v.is_quantized:
            v = v.dequantize()
        if v.is_complex():
            v = torch.view_as_real(v)
        return {"tensor": {"dtype": str(v.dtype), "shape": list(v.shape),
                           "values": v.flatten().tolist()}}
    if isinstance(v, (tuple, list)):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[encode(k), encode(x)] for k, x in v.items()]}
    if isinstance(v, float) and v != v:
        return {"float": "nan"}
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    # Opaque results (script objects: the lite interpreter does not check argument
    # counts and may hand back `self`): their type and printed form.
    return {"object": type(v).__name__, "str": str(v)}


def load(loader, path):
    if loader == "jit":
        return torch.jit.load(path)
    with open(path, "rb") as f:
        return torch._C._load_for_lite_interpreter_from_buffer(f.read(), None)


def target(m, attr):
    for part in filter(None, attr.split(".")):
        m = getattr(m, part)
    return m


def call(loader, m, args):
    if loader == "lite":
        return m.forward(args)
    return m(*args)


def run_reference(loader, job):
    paths = job["reference"] if isinstance(job["reference"], list) else [job["reference"]]
    # Keep the roots alive: PyTorch 2.15 frees a flatbuffer-loaded module's code with its
    # root, so calling a submodule whose root is gone crashes (found by this harness).
    roots = [load(loader, p) for p in paths]
    refs = [target(r, job.get("ref_attr", "")) for r in roots]
    for k, (name, args) in enumerate(inputs()):
        try:
            value = args
            for ref in refs:
                value = (call(loader, ref, value),)
            return {"input": k, "output": encode(value[0])}
        except Exception:
            continue
    return None


def run_candidate(loader, job, k):
    root = load(loader, job["candidate"])
    cand = target(root, job.get("cand_attr", ""))
    return encode(call(loader, cand, inputs()[k][1]))


def run_job(job):
    out = {}
    for loader in job.get("loaders", ["jit"]):
        status, ref = in_child(lambda: run_reference(loader, job))
        if status != "ok":
            out[loader] = {"skipped": "the reference %s: %s" % (
                "crashes PyTorch" if status == "crash" else "does not load", ref)}
            continue
        if ref is None:
            out[loader] = {"skipped": "the reference's forward accepts none of the fixed inputs"}
            continue
        k = ref["input"]
        status, got = in_child(lambda: run_candidate(loader, job, k))
        if status == "crash":
            out[loader] = {"crash": got}
        elif status == "exception":
            out[loader] = {"error": got}
        else:
            out[loader] = {"equal": got == ref["output"], "input": inputs()[k][0],
                           "reference": ref["output"], "candidate": got}
    return out


def main():
    jobs = json.load(sys.stdin)
    torch.manual_seed(0)
    res = [run_job(j) for j in jobs]
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
