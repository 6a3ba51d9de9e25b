#!/usr/bin/env python3
"""Check PyTorch-made mobile flatbuffers against spec/flatbuffer.md (stdlib only).

    python3 oracle/check/fb_check.py corpus/*.ptl corpus/flatbuffer_bugs/*.ptl [-v]

A minimal flatbuffer reader (no generated code) walks the `Module` root table and checks:
identifier `PTMF` at offset 4 and no size prefix; file size a multiple of 32 when a storage
is present; every StorageData byte vector 32-byte aligned; storage_data_size =
len(storage_data); ivalues[0] = NONE; state_obj = mobile_ivalue_size - 1 and that ivalue is
an Object; jit_constants indices >= mobile_ivalue_size; methods point at Functions;
object_types names unique (reported, not an error, for flatbuffer_bugs/); and, against
`<file>.json` (oracle/peer/facts.py output) when present: bytecode_version, operator_version,
function_names (= qn of the Functions among the first mobile_ivalue_size ivalues),
opname_to_num_args (= {"name" or "name.overload": num_args_serialized}), the extra-file
names; against the zip twin `<name>.pt` when present: jit_sources qualifiers and texts =
the zip's code/**.py records (qualifier `__torch__.a.b` <-> `code/__torch__/a/b.py`; the
same top-level classes in another order is only a note: PyTorch does that, e.g. containers).
An empty (0-byte) storage's data vector is not 32-aligned in PyTorch's files: a note (-v).
-v also prints per-file facts (debug-handle range, type annotations, sizes).
Prints one line per finding; exit status 1 if any.
"""
import json
import os
import struct
import sys
import zipfile

IVALUE_TYPES = ["NONE", "Int", "Bool", "Double", "ComplexDouble", "TensorMetadata", "String",
                "List", "Tuple", "Dict", "Object", "IntList", "DoubleList", "BoolList",
                "Device", "EnumValue", "Function"]


class Buf:
    def __init__(self, data):
        self.d = data

    def u8(self, o):
        return self.d[o]

    def u16(self, o):
        return struct.unpack_from("<H", self.d, o)[0]

    def i32(self, o):
        return struct.unpack_from("<i", self.d, o)[0]

    def u32(self, o):
        return struct.unpack_from("<I", self.d, o)[0]

    def i64(self, o):
        return struct.unpack_from("<q", self.d, o)[0]


class Table:
    def __init__(self, buf, pos):
        self.b = buf
        self.pos = pos
        self.vt = pos - buf.i32(pos)
        self.vt_size = buf.u16(self.vt)

    def _off(self, slot):
        vo = 4 + 2 * slot
        if vo >= self.vt_size:
            return 0
        return self.b.u16(self.vt + vo)

    def has(self, slot):
        return self._off(slot) != 0

    def scalar(self, slot, fmt, default=0):
        o = self._off(slot)
        if not o:
            return default
        return struct.unpack_from("<" + fmt, self.b.d, self.pos + o)[0]

    def ref(self, slot):
        o = self._off(slot)
        if not o:
            return None
        p = self.pos + o
        return p + self.b.u32(p)

    def table(self, slot):
        p = self.ref(slot)
        return None if p is None else Table(self.b, p)

    def string(self, slot):
        p = self.ref(slot)
        if p is None:
            return None
        n = self.b.u32(p)
        return self.b.d[p + 4:p + 4 + n]

    def vector(self, slot):
        """(start of elements, length) or None."""
        p = self.ref(slot)
        if p is None:
            return None
        return p + 4, self.b.u32(p)

    def u32_vector(self, slot):
        v = self.vector(slot)
        if v is None:
            return None
        s, n = v
        return [self.b.u32(s + 4 * i) for i in range(n)]

    def table_vector(self, slot):
        v = self.vector(slot)
        if v is None:
            return None
        s, n = v
        return [Table(self.b, s + 4 * i + self.b.u32(s + 4 * i)) for i in range(n)]

    def string_vector(self, slot):
        v = self.vector(slot)
        if v is None:
            return None
        s, n = v
        out = []
        for i in range(n):
            p = s + 4 * i + self.b.u32(s + 4 * i)
            out.append(self.b.d[p + 4:p + 4 + self.b.u32(p)])
        return out


def parse(data):
    b = Buf(data)
    root = Table(b, b.u32(0))
    m = {
        "bytecode_version": root.scalar(0, "I"),
        "extra_files": [(e.string(0), e.string(1)) for e in (root.table_vector(1) or [])],
        "methods": root.u32_vector(2) or [],
        "state_obj": root.scalar(3, "I"),
        "ivalues": root.table_vector(4) or [],
        "storage_data_size": root.scalar(5, "i"),
        "storage_data": root.table_vector(6) or [],
        "object_types": root.table_vector(7) or [],
        "jit_sources": [(e.string(0), e.string(1)) for e in (root.table_vector(8) or [])],
        "jit_constants": root.u32_vector(9) or [],
        "operator_version": root.scalar(10, "I"),
        "mobile_ivalue_size": root.scalar(11, "I"),
    }
    return b, root, m


def ivalue_type(iv):
    return iv.scalar(0, "B")


def function_info(fn):
    ops = []
    for op in fn.table_vector(2) or []:
        ops.append((op.string(0).decode(), (op.string(1) or b"").decode(),
                    op.scalar(2, "i", -1)))
    dbg = fn.table(7)
    handles = []
    if dbg is not None:
        v = dbg.vector(0)
        if v is not None:
            s, n = v
            handles = [fn.b.i64(s + 8 * i) for i in range(n)]
    ins = fn.vector(1)
    return {
        "qn": fn.string(0).decode(),
        "operators": ops,
        "type_annotations": [t.decode() for t in (fn.string_vector(4) or [])],
        "debug_handles": handles,
        "n_instructions": ins[1] if ins else 0,
    }


def zip_code_files(pt):
    with zipfile.ZipFile(pt) as zf:
        infos = zf.infolist()
        prefix = infos[0].filename.split("/", 1)[0]
        code_dir = prefix + "/code/"
        out = {}
        for i in infos:
            n = i.filename
            if n.startswith(code_dir) and n.endswith(".py"):
                q = n[len(code_dir):-3].replace("/", ".")
                out[q] = zf.read(n)
        return out


def _blocks(text):
    """Top-level blocks (a line at column 0 and the indented lines after it)."""
    out = []
    for line in text.decode("utf-8").split("\n"):
        if line[:1] not in (" ", "\t", "") or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return [b.rstrip("\n") for b in out]


def _block_names(text):
    return [b.split("\n", 1)[0].split("(")[0].split(":")[0] for b in _blocks(text)]


def check(path, verbose=False):
    findings = []

    def bad(msg):
        findings.append("%s: %s" % (path, msg))

    with open(path, "rb") as f:
        data = f.read()
    is_bug = os.sep + "flatbuffer_bugs" + os.sep in os.path.abspath(path)
    if data[4:8] != b"PTMF":
        bad("no PTMF identifier at offset 4")
        return findings
    b, root, m = parse(data)
    iv = m["ivalues"]
    n_mobile = m["mobile_ivalue_size"]

    if m["storage_data"] and len(data) % 32:
        bad("size %d not a multiple of 32 although storages are present" % len(data))
    for i, sd in enumerate(m["storage_data"]):
        v = sd.vector(0)
        if v is not None and v[0] % 32:
            if v[1] == 0:   # observed: an empty storage's (0-byte) vector is not 32-aligned
                if verbose:
                    print("%s: note: storage %d is empty, its data offset %d is not "
                          "32-aligned" % (path, i, v[0]))
            else:
                bad("storage %d data at offset %d, not 32-aligned" % (i, v[0]))
    if m["storage_data_size"] != len(m["storage_data"]):
        bad("storage_data_size %d != %d StorageData" % (m["storage_data_size"],
                                                         len(m["storage_data"])))
    if not iv or ivalue_type(iv[0]) != 0:
        bad("ivalues[0] is not NONE")
    if m["state_obj"] != n_mobile - 1:
        bad("state_obj %d != mobile_ivalue_size - 1 = %d" % (m["state_obj"], n_mobile - 1))
    if m["state_obj"] < len(iv) and ivalue_type(iv[m["state_obj"]]) != 10:
        bad("state_obj is a %s" % IVALUE_TYPES[ivalue_type(iv[m["state_obj"]])])
    if n_mobile + len(m["jit_constants"]) != len(iv):
        bad("mobile_ivalue_size %d + %d jit_constants != %d ivalues"
            % (n_mobile, len(m["jit_constants"]), len(iv)))
    for c in m["jit_constants"]:
        if c < n_mobile:
            bad("jit_constants index %d < mobile_ivalue_size" % c)
    for mi in m["methods"]:
        if ivalue_type(iv[mi]) != 16:
            bad("methods entry %d is a %s" % (mi, IVALUE_TYPES[ivalue_type(iv[mi])]))
    names = [t.string(0) for t in m["object_types"]]
    if len(set(names)) != len(names):
        dups = sorted({n.decode() for n in names if names.count(n) > 1})
        (bad if not is_bug else lambda s: print("%s: note: %s" % (path, s)))(
            "object_types names not unique: %s" % dups)

    fns = [function_info(iv[i].table(1)) for i in range(n_mobile) if ivalue_type(iv[i]) == 16]
    function_names = sorted({f["qn"] for f in fns})
    opnames = {}
    for f in fns:
        for name, ov, n in f["operators"]:
            opnames[name + ("." + ov if ov else "")] = n

    fj = path + ".json"
    if os.path.exists(fj) and not is_bug:
        with open(fj, encoding="utf-8") as f:
            facts = json.load(f)
        mi = facts["module_info"]
        for k, mine in (("bytecode_version", m["bytecode_version"]),
                        ("operator_version", m["operator_version"]),
                        ("function_names", function_names)):
            if mi[k] != mine:
                bad("module_info.%s %r != file %r" % (k, mi[k], mine))
        if mi["opname_to_num_args"] != opnames:
            bad("module_info.opname_to_num_args %r != file %r" % (mi["opname_to_num_args"],
                                                                   opnames))
        en = sorted(n.decode("utf-8") for n, _ in m["extra_files"])
        if en != [e["name"] for e in facts["extra_files"]]:
            bad("extra file names %r != facts %r" % (en, [e["name"] for e in facts["extra_files"]]))

    base = path[:-len(".ptl")]
    pt = base + ".pt"
    if is_bug:
        pt = os.path.join(os.path.dirname(os.path.dirname(path)), os.path.basename(base) + ".pt")
    if os.path.exists(pt):
        code = zip_code_files(pt)
        src = {q.decode(): t for q, t in m["jit_sources"]}
        if sorted(src) != sorted(code):
            (bad if not is_bug else lambda s: print("%s: note: %s" % (path, s)))(
                "jit_sources qualifiers %s != zip code files %s" % (sorted(src), sorted(code)))
        else:
            for q in src:
                if src[q] == code[q]:
                    continue
                if sorted(_blocks(src[q])) == sorted(_blocks(code[q])):
                    # observed (containers): same top-level classes, different order
                    print("%s: note: jit_sources[%s] = the zip's code file with its top-level "
                          "blocks in another order: %s vs zip %s"
                          % (path, q, _block_names(src[q]), _block_names(code[q])))
                elif is_bug:
                    print("%s: note: jit_sources[%s] text differs from the zip's code file"
                          % (path, q))
                else:
                    bad("jit_sources[%s] text differs from the zip's code file" % q)
        if len(m["jit_sources"]) != len(src):
            print("%s: note: duplicate jit_sources qualifiers: %s"
                  % (path, [q.decode() for q, _ in m["jit_sources"]]))

    if verbose:
        handles = [h for f in fns for h in f["debug_handles"]]
        print("%s: %d bytes, %d ivalues (%d mobile), %d storages, %d functions, "
              "debug handles %s, type_annotations %s, object_types %s, jit_sources %s"
              % (path, len(data), len(iv), n_mobile, len(m["storage_data"]), len(fns),
                 ("%d..%d" % (min(handles), max(handles))) if handles else "-",
                 sorted({t for f in fns for t in f["type_annotations"]}),
                 [n.decode() for n in names], [q.decode() for q, _ in m["jit_sources"]]))
    return findings


def main(argv):
    verbose = "-v" in argv
    files = [a for a in argv if a != "-v"]
    if not files:
        raise SystemExit(__doc__)
    findings = []
    for p in files:
        try:
            findings += check(p, verbose)
        except Exception as e:  # a reader bug or a malformed file
            findings.append("%s: cannot parse: %s: %s" % (p, type(e).__name__, e))
    for f in findings:
        print(f)
    print("%d file(s), %d finding(s)" % (len(files), len(findings)))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
