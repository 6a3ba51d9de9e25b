#!/usr/bin/env python3
"""What real PyTorch (torch.jit.load) sees in a TorchScript zip archive.

Library:
    from facts import facts, dumps
    obj = facts("corpus/linear.pt")                 # dict, keys in the documented order
    obj = facts("corpus/x.pt", map_location="cpu")

CLI:
    python oracle/facts.py FILE.pt [--map-location cpu]
        prints one JSON object (indent=2, ensure_ascii=False) followed by a newline.

    python oracle/facts.py --worker
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

__all__ = ["facts", "dumps", "tensor_entry", "zip_layout"]


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


def facts(path, map_location=None):
    """Describe what torch.jit.load sees in the archive at `path` (a dict)."""
    path = str(path)
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
    ap.add_argument("file", nargs="?", help="TorchScript zip archive (.pt)")
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
