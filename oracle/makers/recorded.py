#!/usr/bin/env python3
"""The makers' Python files, run under the file names the committed corpus records.

PyTorch writes the file name, the line numbers and the text of every definition it compiles
into the archives it saves (`.debug_pkl` records, a traced graph's call stack, the lite
interpreter's debug map). The corpus was made when these files lay flat in oracle/, so it
records them as RECORDED says: relative to the repository root (the working directory),
except make_models.py, which ran as a script (`python oracle/make_models.py`), whose name
Python makes absolute: ROOT/oracle/make_models.py (the committed models were made in a
checkout at /work/main). A file loaded here keeps that name wherever it lives now: its code is compiled
under the recorded name, the module's `__file__` is that name (inspect.getfile of a class
reads it), and linecache serves the file's text under it (inspect.getsource, which
TorchScript uses, finds it there). Moving a file therefore does not change the corpus;
changing its lines still does (line numbers are recorded too).

    python oracle/makers/recorded.py FILE ARGS...
        runs FILE as `__main__` under its recorded name (sys.argv = [FILE] + ARGS)
"""
import linecache
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# file (relative to HERE) -> the name the corpus records (relative to ROOT)
RECORDED = {
    "scenarios.py": "oracle/scenarios.py",
    "fb_scenarios.py": "oracle/fb_scenarios.py",
    "tinymod.py": "oracle/tinymod.py",
    "pkgx/__init__.py": "oracle/pkgx/__init__.py",
    "pkgx/mods.py": "oracle/pkgx/mods.py",
    "make_models.py": "oracle/make_models.py",
}
ABSOLUTE = {"make_models.py"}   # recorded as os.path.join(ROOT, name)


def recorded_name(path):
    """The recorded name of `path` (a file of this directory)."""
    rel = os.path.relpath(os.path.abspath(path), HERE).replace(os.sep, "/")
    return os.path.join(ROOT, RECORDED[rel]) if rel in ABSOLUTE else RECORDED[rel]


def source(path):
    """(recorded name, text) of `path`, the text also put into linecache under the name."""
    name = recorded_name(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # mtime None: linecache.checkcache leaves the entry alone (it cannot stat the name)
    linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    return name, text


def exec_into(module, path):
    """Execute `path` in `module`'s namespace under its recorded name."""
    name, text = source(path)
    module.__file__ = name
    exec(compile(text, name, "exec"), module.__dict__)
    return module


def load(modname, path, package_dir=None):
    """Import `path` as module `modname` (a package when package_dir is given)."""
    mod = types.ModuleType(modname)
    if package_dir is not None:
        mod.__path__ = [package_dir]
        mod.__package__ = modname
    else:
        mod.__package__ = modname.rpartition(".")[0]
    sys.modules[modname] = mod
    return exec_into(mod, path)


def new_main():
    """A fresh, empty `__main__` module, installed in sys.modules."""
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    return main


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: recorded.py FILE ARGS...")
    path = os.path.abspath(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(path))
    exec_into(new_main(), path)


if __name__ == "__main__":
    main()
