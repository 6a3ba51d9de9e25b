#!/usr/bin/env python3
"""What real PyTorch (torch.jit.load) sees in a TorchScript zip archive or mobile flatbuffer.

Library:
    from facts import facts, dumps
    obj = facts("corpus/linear.pt")                 # dict, keys in the documented order
    obj = facts("corpus/x.pt", map_location="cpu")

CLI:
    python oracle/peer/facts.py FILE.pt [--map-location cpu]
        prints one JSON object (indent=2, ensure_ascii=False) followed by a newline.

    python oracle/peer/facts.py --worker
        long-running worker: reads one JSON request per stdin line,
        {"path": "...", "map_location": null | "cpu" | ...}, and answers each with one
        JSON line on stdout: {"ok": true, "facts": {...}} or
        {"ok": false, "error": "<exception type>: <message>"}.  EOF ends the worker.

Output shape (keys in this order):
    format        "zip"
    modules       [{"name", "type"}]                named_modules() order, root name ""
                                                    type = module._c.qualified_name
    parameters    [{"name","dtype","shape","device"}]  named_parameters() order
    buffers       [{"name","dtype","shape","device"}]  named_buffers() order
    extra_files   [{"name","size","sha256"}]        sorted by name; names from the zip's
                                                    PREFIX/extra/ records, bytes as
                                                    returned by torch.jit.load(_extra_files=)
    code_files    [str]                             sorted PREFIX/code/**.py records,
                                                    relative to code/
    version       int                               from .data/version (preferred) or version
    prefix        str                               text before the first "/" of the first
                                                    central-directory entry

Mobile flatbuffers (file identifier `PTMF` at byte offset 4, e.g. corpus/*.ptl) give the
same keys in the same order, then three more:
    format        "flatbuffer"
    modules, parameters, buffers                    as above, from torch.jit.load(path)
    extra_files   [{"name","size","sha256"}]        sorted by name; ALL extra files:
                                                    torch.jit.load(path, _extra_files={})
                                                    fills the dict with every extra file of
                                                    a flatbuffer (keys need not be asked for)
    code_files    []                                PyTorch exposes no list of the
                                                    flatbuffer's jit_sources
    version       null                              (no zip version record; the operator
                                                    version is module_info.operator_version)
    prefix        null                              (no archive prefix)
    module_info   {"bytecode_version": int, "operator_version": int,
                   "function_names": [str], "type_names": [str],
                   "opname_to_num_args": {str: int}}
                                                    torch._C._get_module_info_from_flatbuffer
                                                    (= torch.jit._serialization.
                                                    get_flatbuffer_module_info); the two sets
                                                    as sorted lists, the dict in PyTorch's order
    lite_interpreter_loads  bool                    torch._C._load_for_lite_interpreter_from_buffer
                                                    (bytes, map_location) succeeds
    lite_interpreter_error  str                     only when it does not load
    extra_files_from_buffer [...]                   only when torch._C.
                                                    _get_model_extra_files_from_buffer(bytes,
                                                    {}) disagrees with extra_files (same
                                                    entry shape), or
    extra_files_from_buffer_error  str              only when that call raises
"""

import hashlib
import json
import sys
import warnings
import zipfile

import torch

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*TorchScript.*")

__all__ = ["facts", "dumps", "tensor_entry", "zip_layout", "is_flatbuffer",
           "flatbuffer_jit_facts", "flatbuffer_mobile_facts", "module_info_json",
           "extra_entries"]


def _dtype_name(dtype):
    s = str(dtype)
    return s[len("torch."):] if s.startswith("torch.") else s


def tensor_entry(name, t):
    return {
        "name": name,
        "dtype": _dtype_name(t.dtype),
        "shape": [int(d) for d in t.shape],
        "device": str(t.device),
    }


def zip_layout(path):
    """(prefix, extra names, code .py names relative to code/, version) via python zipfile."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if not infos:
            raise ValueError("empty zip archive")
        first = infos[0].filename
        prefix = first.split("/", 1)[0]
        names = [i.filename for i in infos]
        extra_dir = prefix + "/extra/"
        code_dir = prefix + "/code/"
        extra = sorted(n[len(extra_dir):] for n in names if n.startswith(extra_dir))
        code = sorted(n[len(code_dir):] for n in names
                      if n.startswith(code_dir) and n.endswith(".py"))
        version = None
        for rec in (".data/version", "version"):
            full = prefix + "/" + rec
            if full in names:
                version = int(zf.read(full).decode("ascii").strip())
                break
    return prefix, extra, code, version


def is_flatbuffer(path):
    """True when the file carries the mobile flatbuffer identifier PTMF at offset 4."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] == b"PTMF"


def extra_entries(d):
    """[{"name","size","sha256"}] sorted by name, for a dict name -> bytes (or str)."""
    out = []
    for name in sorted(d):
        data = d[name]
        if isinstance(data, str):  # defensive; PyTorch returns bytes
            data = data.encode("utf-8")
        out.append({
            "name": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        })
    return out


def module_info_json(info):
    """get_flatbuffer_module_info's dict with every set turned into a sorted list."""
    return {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in info.items()}


def flatbuffer_jit_facts(path, map_location=None):
    """The torch.jit.load part of the flatbuffer facts (format .. prefix)."""
    path = str(path)
    extra_req = {}
    if map_location is None:
        m = torch.jit.load(path, _extra_files=extra_req)
    else:
        m = torch.jit.load(path, map_location=map_location, _extra_files=extra_req)
    return {
        "format": "flatbuffer",
        "modules": [{"name": n, "type": mod._c.qualified_name}
                    for n, mod in m.named_modules()],
        "parameters": [tensor_entry(n, t) for n, t in m.named_parameters()],
        "buffers": [tensor_entry(n, t) for n, t in m.named_buffers()],
        "extra_files": extra_entries(extra_req),
        "code_files": [],
        "version": None,
        "prefix": None,
    }


def flatbuffer_mobile_facts(data, map_location=None, extra_files=None):
    """module_info, lite-interpreter loading and _get_model_extra_files_from_buffer."""
    res = {"module_info": module_info_json(torch._C._get_module_info_from_flatbuffer(data))}
    ml = None if map_location is None else torch.device(map_location)
    try:
        torch._C._load_for_lite_interpreter_from_buffer(data, ml)
        res["lite_interpreter_loads"] = True
    except Exception as e:
        res["lite_interpreter_loads"] = False
        res["lite_interpreter_error"] = "%s: %s" % (type(e).__name__, _first_line(e))
    try:
        from_buffer = extra_entries(torch._C._get_model_extra_files_from_buffer(data, {}))
        if extra_files is not None and from_buffer != extra_files:
            res["extra_files_from_buffer"] = from_buffer
    except Exception as e:
        res["extra_files_from_buffer_error"] = "%s: %s" % (type(e).__name__, _first_line(e))
    return res


def _first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def facts(path, map_location=None):
    """Describe what torch.jit.load sees in the archive at `path` (a dict)."""
    path = str(path)
    if is_flatbuffer(path):
        obj = flatbuffer_jit_facts(path, map_location)
        with open(path, "rb") as f:
            data = f.read()
        obj.update(flatbuffer_mobile_facts(data, map_location, obj["extra_files"]))
        return obj
    prefix, extra_names, code_files, version = zip_layout(path)

    extra_req = {name: "" for name in extra_names}
    if map_location is None:
        m = torch.jit.load(path, _extra_files=extra_req)
    else:
        m = torch.jit.load(path, map_location=map_location, _extra_files=extra_req)

    extra_files = []
    for name in sorted(extra_req):
        data = extra_req[name]
        if isinstance(data, str):  # defensive; PyTorch returns bytes
            data = data.encode("utf-8")
        extra_files.append({
            "name": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        })

    return {
        "format": "zip",
        "modules": [{"name": n, "type": mod._c.qualified_name}
                    for n, mod in m.named_modules()],
        "parameters": [tensor_entry(n, t) for n, t in m.named_parameters()],
        "buffers": [tensor_entry(n, t) for n, t in m.named_buffers()],
        "extra_files": extra_files,
        "code_files": code_files,
        "version": version,
        "prefix": prefix,
    }


def dumps(obj):
    """The canonical text form: indent=2, ensure_ascii=False, trailing newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _worker(stdin, stdout):
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            res = {"ok": True, "facts": facts(req["path"], req.get("map_location"))}
        except Exception as e:  # report, keep serving
            res = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        stdout.write(json.dumps(res, ensure_ascii=False) + "\n")
        stdout.flush()


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("file", nargs="?",
                    help="TorchScript zip archive (.pt) or mobile flatbuffer (.ptl)")
    ap.add_argument("--map-location", default=None,
                    help="passed to torch.jit.load (e.g. cpu)")
    ap.add_argument("--worker", action="store_true",
                    help="serve JSON-lines requests on stdin")
    args = ap.parse_args(argv)

    if args.worker:
        _worker(sys.stdin, sys.stdout)
        return 0
    if not args.file:
        ap.error("FILE is required unless --worker is given")
    out = dumps(facts(args.file, args.map_location))
    sys.stdout.buffer.write(out.encode("utf-8"))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
