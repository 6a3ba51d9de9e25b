#!/usr/bin/env python3
"""Re-save every `*.pt` / `*.ptl` in DIR with this python's PyTorch, three ways, into OUT:
NAME.zip (torch.jit.save), NAME.ptl (save_jit_module_to_flatbuffer) and NAME.lite
(_save_for_lite_interpreter), each from `torch.jit.load(NAME, _extra_files=...)` with the
file's extra files passed on. A way PyTorch refuses is skipped (its file absent).
Prints one JSON line: {"version": ..., "loaded": N, "failed": N}.

    $PY oracle/peer/resave.py DIR OUT
"""
import io
import json
import os
import sys
import warnings
import zipfile

warnings.filterwarnings("ignore")

import torch  # noqa: E402


def extra_names(path):
    if not zipfile.is_zipfile(path):
        return []
    with zipfile.ZipFile(path) as zf:
        return [n.split("/extra/", 1)[1] for n in zf.namelist() if "/extra/" in n]


def main(src, out):
    os.makedirs(out, exist_ok=True)
    loaded = failed = 0
    for name in sorted(os.listdir(src)):
        if not name.endswith((".pt", ".ptl")):
            continue
        path = os.path.join(src, name)
        extra = {n: "" for n in extra_names(path)}
        try:
            m = torch.jit.load(path, _extra_files=extra)
        except Exception:
            failed += 1
            continue
        loaded += 1
        writers = {
            "zip": lambda b: torch.jit.save(m, b, _extra_files=extra),
            "ptl": lambda b: torch.jit.save_jit_module_to_flatbuffer(m, b, _extra_files=extra),
            "lite": lambda b: b.write(m._save_to_buffer_for_lite_interpreter(_extra_files=extra)),
        }
        for ext, write in writers.items():
            buf = io.BytesIO()
            try:
                write(buf)
            except Exception:
                continue
            with open(os.path.join(out, "%s.%s" % (name, ext)), "wb") as f:
                f.write(buf.getvalue())
    print(json.dumps({"version": torch.__version__, "loaded": loaded, "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
