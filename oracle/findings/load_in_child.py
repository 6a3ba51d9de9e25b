"""Load FILE with torch.jit.load (or, with `lite` as a second argument, the lite
interpreter) in a forked child (4 GiB address-space limit, 60 s) and
print how it ended as JSON: {"status": "ok" | "exception" | "memory" | "crash" | "hang",
"detail": ...}. Used to re-check corpus/torch-crashes/.

    python oracle/findings/load_in_child.py FILE [jit|lite|info]
    python oracle/findings/load_in_child.py --many jit|lite|info FILE...

`--many` imports torch once and prints one JSON line per file (with "file" added).
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer"))
import torch  # noqa: E402

from forkrun import in_child  # noqa: E402


def load(path, how):
    if how == "jit":
        torch.jit.load(path)
    else:
        with open(path, "rb") as f:
            data = f.read()
        if how == "lite":
            torch._C._load_for_lite_interpreter_from_buffer(data, None)
        else:
            torch._C._get_module_info_from_flatbuffer(data)
    return None


if sys.argv[1] == "--many":
    how = sys.argv[2]
    for path in sys.argv[3:]:
        status, detail = in_child(lambda: load(path, how), timeout=60, memory_mb=4096)
        print(json.dumps({"file": path, "status": status, "detail": detail}), flush=True)
else:
    how = sys.argv[2] if len(sys.argv) > 2 else "jit"
    status, detail = in_child(lambda: load(sys.argv[1], how), timeout=60, memory_mb=4096)
    print(json.dumps({"status": status, "detail": detail}))
