#!/usr/bin/env python3
"""One isolated look at a mobile flatbuffer with real PyTorch (may crash: run it in a child).

    python oracle/peer/fbprobe.py MODE FILE.ptl

prints one JSON object on stdout. MODE:
    jit_load       torch.jit.load(path, _extra_files={}) -> facts.flatbuffer_jit_facts
    jit_forward    torch.jit.load(path)(torch.ones(2, 2)) -> {"output": description}
    jit_children_forward
                   each direct child c of torch.jit.load(path): c(torch.ones(2, 2))
                   -> {"children": {name: {"output": ...} | {"exception": ...}}}
    lite_load      torch._C._load_for_lite_interpreter_from_buffer(bytes, None) -> {}
    lite_forward   the lite module's forward((torch.ones(2, 2),)) -> {"output": description}
    module_info    torch._C._get_module_info_from_flatbuffer(bytes) (sets as sorted lists)
    extra_files    torch._C._get_model_extra_files_from_buffer(bytes, {}) -> entries

An exception is reported as {"exception": "<type>: <last line of the message>"} with exit
status 0; a crash shows up as the child's exit status / signal (see make_corpus.py, which
runs every mode in its own process).  `torch.ones(2, 2)` fits the forward of the
collision scenarios (Linear(2, 2) chains).
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

import facts as factsmod  # noqa: E402

MODES = ("jit_load", "jit_forward", "jit_children_forward", "lite_load", "lite_forward", "module_info", "extra_files")


def describe(v):
    """A short, deterministic description of a forward() result."""
    if isinstance(v, torch.Tensor):
        return {"tensor": {"dtype": factsmod._dtype_name(v.dtype), "shape": list(v.shape)}}
    if isinstance(v, (tuple, list)):
        return [describe(x) for x in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return type(v).__name__


def exc_text(e):
    """Exception type and the last non-empty line of its message (the C++ assertion text;
    the TorchScript traceback above it is dropped)."""
    lines = [l for l in str(e).splitlines() if l.strip()]
    return "%s: %s" % (type(e).__name__, lines[-1].strip() if lines else "")


def run(mode, path):
    with open(path, "rb") as f:
        data = f.read()
    if mode == "jit_load":
        return {"facts": factsmod.flatbuffer_jit_facts(path)}
    if mode == "jit_forward":
        m = torch.jit.load(path)
        return {"output": describe(m(torch.ones(2, 2)))}
    if mode == "jit_children_forward":
        m = torch.jit.load(path)
        res = {}
        for n, c in m.named_children():
            try:
                res[n] = {"output": describe(c(torch.ones(2, 2)))}
            except Exception as e:
                res[n] = {"exception": exc_text(e)}
        return {"children": res}
    if mode == "lite_load":
        torch._C._load_for_lite_interpreter_from_buffer(data, None)
        return {}
    if mode == "lite_forward":
        m = torch._C._load_for_lite_interpreter_from_buffer(data, None)
        return {"output": describe(m.forward((torch.ones(2, 2),)))}
    if mode == "module_info":
        return {"module_info": factsmod.module_info_json(
            torch._C._get_module_info_from_flatbuffer(data))}
    if mode == "extra_files":
        return {"extra_files": factsmod.extra_entries(
            torch._C._get_model_extra_files_from_buffer(data, {}))}
    raise SystemExit("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    mode, path = sys.argv[1], sys.argv[2]
    try:
        res = run(mode, path)
        res = dict({"ok": True}, **res)
    except Exception as e:
        res = {"ok": False, "exception": exc_text(e)}
    sys.stdout.write(json.dumps(res, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
