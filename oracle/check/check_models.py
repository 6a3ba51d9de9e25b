#!/usr/bin/env python3
"""Run the ptconform binary over the real-model corpus written by oracle/makers/make_models.py.

    python3 oracle/check/check_models.py [DIR] [--bin target/release/ptconform] [-j 2]
                                   [--only NAME...] [--json OUT.json]

DIR defaults to ~/.cache/ptconform/models (use corpus/models for the committed ones).
Plain python3 is enough (no torch needed). For every .pt / .ptl file in DIR:

  check      `ptconform check FILE`            ok = exit 0 and only "FILE: ok"
  inspect    `ptconform inspect --json FILE`   compared with the facts JSON beside FILE
                                               (zip X.pt -> X.json, flatbuffer X.ptl ->
                                               X.ptl.json, as oracle/makers/make_models.py writes
                                               them), only on the keys both objects have
  roundtrip  `ptconform roundtrip FILE`        ok = "identical"
and for each twin pair of one model (NAME.pt/NAME.ptl, NAME.frozen.pt/NAME.frozen.ptl,
NAME.lite.ptl/NAME.lite_fb.ptl): `ptconform diff A B`, ok = exit 0.

Prints a table (one row per file: check / inspect / roundtrip / diff) and then the
distinct failure messages grouped by command and pattern (file names, numbers, hex and
quoted names normalized), with counts and one example file + exact message each.
--json writes every raw outcome. Exit 0 always (it is a report).
"""
import argparse
import collections
import concurrent.futures
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ptconform", "models")
TIMEOUT = 900
TWINS = [(".pt", ".ptl"), (".frozen.pt", ".frozen.ptl"), (".lite.ptl", ".lite_fb.ptl")]
SUFFIXES = [".lite_fb.ptl", ".lite.ptl", ".frozen.ptl", ".frozen.pt", ".mobile.ptl",
            ".ptl", ".pt"]


def is_flatbuffer(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] == b"PTMF"


def json_for(path):
    if is_flatbuffer(path):
        return path + ".json"
    return os.path.splitext(path)[0] + ".json"


def split_name(fn):
    for s in SUFFIXES:
        if fn.endswith(s):
            return fn[:-len(s)], s
    return None, None


def run(args):
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "", "timeout after %d s" % TIMEOUT
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def _crash(rc):
    if rc is not None and rc < 0:
        import signal
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return None


def _msg(rc, so, se):
    why = _crash(rc)
    if rc is None:
        return se
    text = (se.strip() or so.strip())
    lines = [l for l in text.splitlines() if l.strip()]
    first = lines[0] if lines else ""
    if why:
        return "%s%s" % (why, (": " + first) if first else "")
    return first if first else "exit status %d" % rc


def first_diff(a, b, path=""):
    """The first place where JSON values a and b differ: (path, a-part, b-part)."""
    if type(a) is not type(b):
        return path or "<root>", a, b
    if isinstance(a, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return "%s.%s" % (path, k), a.get(k, "<missing>"), b.get(k, "<missing>")
            d = first_diff(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        if len(a) != len(b):
            return "%s (length)" % path, len(a), len(b)
        return None
    if a != b:
        return path or "<root>", a, b
    return None


def _short(v, n=160):
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return s if len(s) <= n else s[:n] + "..."


def check_file(binary, path):
    res = {"pytorch_loads": os.path.exists(json_for(path))}
    rc, so, se = run([binary, "check", path])
    lines = [l for l in so.splitlines() if l.strip()]
    bad = [l for l in lines if not l.endswith(": ok")]
    if rc == 0 and not bad:
        res["check"] = {"ok": True}
    else:
        res["check"] = {"ok": False, "rc": rc,
                        "messages": bad or [_msg(rc, so, se)]}

    jp = json_for(path)
    rc, so, se = run([binary, "inspect", "--json", path])
    if rc != 0:
        res["inspect"] = {"ok": False, "rc": rc, "messages": [_msg(rc, so, se)]}
    elif not os.path.exists(jp):
        res["inspect"] = {"ok": None, "messages": ["no facts JSON (PyTorch could not load it)"]}
    else:
        try:
            ours = json.loads(so)
        except ValueError as e:
            ours = None
            res["inspect"] = {"ok": False, "messages": ["inspect --json is not JSON: %s" % e]}
        if ours is not None:
            with open(jp, encoding="utf-8") as f:
                theirs = json.load(f)
            common = [k for k in theirs if k in ours]
            msgs = []
            for k in common:
                d = first_diff(ours[k], theirs[k], k)
                if d:
                    msgs.append("facts differ at %s: ptconform %s, PyTorch %s"
                                % (d[0], _short(d[1]), _short(d[2])))
            # keys only one side has (e.g. facts.py's lite_interpreter_loads, which is
            # about PyTorch's runtime) are listed, not compared
            res["inspect"] = {"ok": not msgs, "messages": msgs,
                              "only_pytorch_keys": [k for k in theirs if k not in ours],
                              "only_ptconform_keys": [k for k in ours if k not in theirs]}

    rc, so, se = run([binary, "roundtrip", path])
    out = so.strip()
    if rc == 0 and out == "identical":
        res["roundtrip"] = {"ok": True}
    else:
        res["roundtrip"] = {"ok": False, "rc": rc,
                            "messages": [out.splitlines()[0] if out and rc == 0
                                         else _msg(rc, so, se)]}
    return res


def _diff_kind(d):
    """One difference of `diff --json` as a short category: "SECTION CHANGE", and for a
    changed code file whether its unified diff only moves lines (the same multiset of
    removed and added lines: definitions in another order) or changes them."""
    kind = "%s %s" % (d.get("section"), d.get("change"))
    text = d.get("diff")
    if d.get("section") == "code" and d.get("change") == "changed" and text:
        minus = collections.Counter(l[1:] for l in text.splitlines()
                                    if l.startswith("-") and not l.startswith("---"))
        plus = collections.Counter(l[1:] for l in text.splitlines()
                                   if l.startswith("+") and not l.startswith("+++"))
        if minus == plus:
            kind += " (definitions reordered only)"
        else:
            norm = lambda c: collections.Counter(  # noqa: E731
                {re.sub(r"\b_\d+\b", "_N", k): 0 for k in c}) + collections.Counter(
                [re.sub(r"\b_\d+\b", "_N", k) for k in c.elements()])
            if norm(minus) == norm(plus):
                kind += " (definitions reordered, printer temporaries _N renumbered)"
            else:
                kind += " (content differs)"
    return kind


def diff_pair(binary, a, b):
    rc, so, se = run([binary, "diff", "--json", a, b])
    if rc == 0:
        return {"ok": True}
    try:
        obj = json.loads(so)
    except ValueError:
        return {"ok": False, "rc": rc, "messages": [_msg(rc, so, se)]}
    diffs = obj.get("differences", [])
    kinds = sorted(set(_diff_kind(d) for d in diffs))
    paths = ["%s %s" % (d.get("section"), d.get("path")) for d in diffs]
    return {"ok": False, "rc": rc, "messages": ["; ".join(kinds)],
            "differences": paths}


def pattern(cmd, msg, fname):
    m = msg
    for f in fname.split(" "):
        m = m.replace(f, "FILE")
    for f in fname.split(" "):
        base = os.path.basename(f)
        m = m.replace(base, "FILE")
        name, _suf = split_name(base)
        if name:
            m = m.replace(name, "NAME")
    if cmd == "check":
        # FILE: RULE: message -> group by rule and the message's shape
        parts = m.split(": ", 2)
        if len(parts) == 3 and parts[0].endswith("FILE"):
            m = parts[1] + ": " + parts[2]
    m = re.sub(r"(?<![\w.])/[^\s'\"]+", "PATH", m)
    m = re.sub(r"0x[0-9a-fA-F]+", "0xN", m)
    m = re.sub(r"`[^`]*`", "`…`", m)
    m = re.sub(r'"[^"]*"', '"…"', m)
    m = re.sub(r"'[^']*'", "'…'", m)
    if cmd == "diff":
        m = m.split("  [", 1)[0]   # group by kinds, not by the code file names
    m = re.sub(r"\d+", "N", m)
    m = re.sub(r"__torch__[\w.]*", "__torch__…", m)
    return m[:220]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ptconform"))
    ap.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--only", nargs="+", metavar="NAME")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    d = os.path.abspath(os.path.expanduser(args.dir))
    binary = os.path.abspath(args.bin)

    files = []
    for fn in sorted(os.listdir(d)):
        name, suf = split_name(fn)
        if name is None or (args.only and name not in args.only):
            continue
        files.append(fn)
    pairs = []
    present = set(files)
    for fn in files:
        name, suf = split_name(fn)
        for a, b in TWINS:
            if suf == a and name + b in present:
                pairs.append((fn, name + b))

    results = {}
    diffs = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as ex:
        futs = {ex.submit(check_file, binary, os.path.join(d, fn)): fn for fn in files}
        dfuts = {ex.submit(diff_pair, binary, os.path.join(d, a), os.path.join(d, b)): (a, b)
                 for a, b in pairs}
        for f in concurrent.futures.as_completed(list(futs) + list(dfuts)):
            if f in futs:
                results[futs[f]] = f.result()
            else:
                diffs[dfuts[f]] = f.result()

    def cell(r):
        if r is None:
            return "-"
        return "ok" if r["ok"] else ("n/a" if r["ok"] is None else "FAIL")

    print("%-48s %-6s %-7s %-9s %s" % ("file", "check", "inspect", "roundtrip", "diff twin"))
    totals = collections.Counter()
    for fn in files:
        r = results[fn]
        dp = [(p, v) for p, v in diffs.items() if p[0] == fn]
        dcell = cell(dp[0][1]) + " " + dp[0][0][1] if dp else "-"
        print("%-48s %-6s %-7s %-9s %s" % (fn, cell(r["check"]), cell(r["inspect"]),
                                          cell(r["roundtrip"]), dcell))
        for k in ("check", "inspect", "roundtrip"):
            totals[(k, cell(r[k]))] += 1
    for _p, v in diffs.items():
        totals[("diff", cell(v))] += 1
    print()
    for k in ("check", "inspect", "roundtrip", "diff"):
        print("%-10s %s" % (k, ", ".join("%s %d" % (c, totals[(k, c)])
                                         for c in ("ok", "FAIL", "n/a") if totals[(k, c)])))

    groups = collections.OrderedDict()

    def add(cmd, fn, msg, pytorch_loads):
        key = (cmd, pattern(cmd, msg, fn))
        g = groups.setdefault(key, {"count": 0, "messages": 0, "files": [],
                                    "pytorch_rejects": 0, "example_file": fn,
                                    "example": msg})
        g["messages"] += 1
        if fn not in g["files"]:
            g["files"].append(fn)
            g["count"] += 1
            if not pytorch_loads:
                g["pytorch_rejects"] += 1

    for fn in files:
        for k in ("check", "inspect", "roundtrip"):
            r = results[fn][k]
            if r["ok"] is False:
                for msg in r["messages"]:
                    add(k, os.path.join(d, fn), msg, results[fn]["pytorch_loads"])
    for (a, b), v in sorted(diffs.items()):
        if not v["ok"]:
            add("diff", "%s %s" % (a, b), " | ".join(v["messages"]) + "  [" +
                "; ".join(v.get("differences", [])[:4]) + "]", True)

    # files torch.jit.load rejects (no facts JSON) but `ptconform check` passes: a
    # disagreement; the PyTorch error comes from make_models.py's manifest
    pytorch_error = {}
    mp = os.path.join(d, "manifest.json")
    if os.path.exists(mp):
        with open(mp, encoding="utf-8") as f:
            for e in json.load(f).get("models", {}).values():
                for v in e.get("variants", {}).values():
                    if "facts_error" in v:
                        pytorch_error[v["file"]] = v["facts_error"]
    for fn in files:
        r = results[fn]
        if not r["pytorch_loads"] and r["check"]["ok"]:
            add("check-accepts", os.path.join(d, fn),
                "ptconform check passes, torch.jit.load fails: %s"
                % pytorch_error.get(fn, "(see manifest)"), False)

    print("\nfailure categories (%d); xN = files (or twin pairs), [PyTorch rejects M] = M of "
          "them torch.jit.load fails on too:" % len(groups))
    for (cmd, pat), g in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[1]["count"])):
        print("\n[%s] x%d%s%s  %s" % (
            cmd, g["count"],
            " (%d messages)" % g["messages"] if g["messages"] != g["count"] else "",
            " [PyTorch rejects %d]" % g["pytorch_rejects"] if g["pytorch_rejects"] else "",
            pat))
        print("    e.g. %s" % os.path.basename(g["example_file"].split(" ")[0])
              + (" " + g["example_file"].split(" ")[1] if " " in g["example_file"] else ""))
        print("    %s" % g["example"][:600])

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"files": results,
                       "diffs": {"%s %s" % k: v for k, v in diffs.items()},
                       "categories": [{"command": c, "pattern": p, **g}
                                      for (c, p), g in groups.items()]},
                      f, indent=2, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
