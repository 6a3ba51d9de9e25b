#!/usr/bin/env python3
"""Lists, for every rule id of crates/core/src/rule.rs, the modules that raise it (name
its constant outside comparisons, tests, rule.rs and the aliases in error.rs). Each rule
should have exactly one: `python3 scripts/rule-modules.py` exits 1 otherwise."""
import collections
import re
import subprocess
import sys

alias = {m[1]: m[2] for m in re.finditer(r"pub const ([A-Z_0-9]+): Rule = Rule::([A-Za-z]+);",
                                        open("crates/core/src/error.rs").read())}
files = subprocess.check_output(["git", "ls-files", "crates/*.rs", "src/*.rs", "fuzz/*.rs"]).decode().split()
use = collections.defaultdict(set)
for f in files:
    if f.endswith(("crates/core/src/error.rs", "crates/core/src/rule.rs")) or "/tests" in f:
        continue
    s = open(f).read()
    cut = s.find("#[cfg(test)]\nmod tests {")
    s = s if cut < 0 else s[:cut]
    for line in s.split("\n"):
        if re.search(r"==\s*(rules::|Rule::)", line):
            continue  # a comparison, not a finding
        for m in re.finditer(r"rules::([A-Z_0-9]+)|Rule::([A-Z][A-Za-z]+)", line):
            r = alias.get(m[1]) if m[1] else m[2]
            if r and r != "ALL":
                use[r].add(f)
rules = re.findall(r"^\s+([A-Z][A-Za-z]+) = \"([a-z0-9-]+)\"", open("crates/core/src/rule.rs").read(), re.M)
bad = [i for v, i in rules if len(use.get(v, ())) != 1]
for v, i in rules:
    print(f"{i:28} {', '.join(sorted(use.get(v, []))) or '(none)'}")
print(f"# {len(rules)} rules; {len(bad)} raised from other than exactly one module {bad or ''}")
sys.exit(1 if bad else 0)
