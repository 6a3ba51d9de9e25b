"""PyTorch 2.15: keep only a submodule of a module that torch.jit.load read from a
flatbuffer, drop the root, call the submodule: the process dies with SIGSEGV (the
submodule's code is freed with the root). The same with a zip archive works.

    python oracle/findings/flatbuffer_submodule_after_root.py FILE.ptl SUBMODULE
"""
import gc
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

child = getattr(torch.jit.load(sys.argv[1]), sys.argv[2])
gc.collect()
print(child(torch.ones(2, 2)))
