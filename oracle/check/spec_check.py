#!/usr/bin/env python3
"""Check corpus archives against the byte-level claims of spec/ (stdlib only).

    python3 oracle/check/spec_check.py corpus/*.pt

Checks (zip-archive.md / pickle.md): prefix rule, local headers (flags, version needed,
zeroed time/date/CRC/sizes, the `FB` padding field, 64-byte data alignment), data
descriptors, the "deflate iff code/*.py or *.debug_pkl and > 200 bytes" rule, central
directory fields, zip64 EOCD + locator + EOCD, record order, `version`/`.data/version`,
`byteorder`, the `.data/serialization_id` model, the pickle dialect (opcode set, LONG1
length 8, int opcode ranges) and that every storage record holds
numel * element_size bytes.  Prints one line per finding; exit status 1 if any.
"""
import pickle
import pickletools
import re
import struct
import sys
import zlib

ELEMENT_SIZE = {
    "Byte": 1, "Char": 1, "Short": 2, "Int": 4, "Long": 8, "Half": 2, "Float": 4,
    "Double": 8, "ComplexHalf": 4, "ComplexFloat": 8, "ComplexDouble": 16, "Bool": 1,
    "QInt8": 1, "QUInt8": 1, "QInt32": 4, "BFloat16": 2, "QUInt4x2": 1, "QUInt2x4": 1,
    "Bits1x8": 1, "Bits2x4": 1, "Bits4x2": 1, "Bits8": 1, "Bits16": 2,
    "Float8_e5m2": 1, "Float8_e4m3fn": 1, "Float8_e5m2fnuz": 1, "Float8_e4m3fnuz": 1,
    "UInt16": 2, "UInt32": 4, "UInt64": 8, "Float8_e8m0fnu": 1, "Float4_e2m1fn_x2": 1,
}
for _i in range(1, 8):
    ELEMENT_SIZE["UInt%d" % _i] = 1
    ELEMENT_SIZE["Int%d" % _i] = 1

ALLOWED_OPS = {
    "PROTO", "STOP", "GLOBAL", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "MARK",
    "TUPLE", "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPENDS",
    "EMPTY_DICT", "SETITEMS", "NEWOBJ", "BUILD", "REDUCE", "BINPERSID", "BINUNICODE",
    "BINUNICODE8", "BININT1", "BININT2", "BININT", "LONG1", "BINFLOAT", "NEWTRUE",
    "NEWFALSE", "NONE",
}

M64 = (1 << 64) - 1


# ---------------------------------------------------------------- serialization id model
def _shiftmix(v):
    return v ^ (v >> 47)


def str_hash(b, seed=0xC70F6907):
    m = 0xC6A4A7935BD1E995
    h = (seed ^ (len(b) * m)) & M64
    full = len(b) // 8 * 8
    for i in range(0, full, 8):
        d = int.from_bytes(b[i:i + 8], "little")
        d = (_shiftmix((d * m) & M64) * m) & M64
        h = ((h ^ d) * m) & M64
    if len(b) % 8:
        h = ((h ^ int.from_bytes(b[full:], "little")) * m) & M64
    h = (_shiftmix(h) * m) & M64
    return _shiftmix(h)


def combine(seed, v):
    return (seed ^ ((v + 0x9E3779B9 + ((seed << 6) & M64) + (seed >> 2)) & M64)) & M64


SET_BUCKETS = [1, 13, 29, 59, 127, 257, 541, 1109, 2357, 5087, 10273, 20753, 42043,
               85229, 172933, 351061, 712697, 1447153, 2938679, 5967347]


def _list_insert(lst, h, nb, item):
    b = h % nb
    for i, (_, h2) in enumerate(lst):
        if h2 % nb == b:
            lst.insert(i, item)
            return
    lst.insert(0, item)


def set_order(names):
    """Iteration order of a default-constructed libstdc++ unordered_set<string>."""
    nb = 1
    lst = []
    for n in names:
        h = str_hash(n.encode("utf-8"))
        if any(x[0] == n for x in lst):
            continue
        if len(lst) + 1 > nb:
            nb = SET_BUCKETS[SET_BUCKETS.index(nb) + 1]
            old, lst = lst, []
            for item in old:
                _list_insert(lst, item[1], nb, item)
        _list_insert(lst, h, nb, (n, h))
    return lst


def serialization_id(records):
    """records: [(name, data_bytes)] in write order, excluding the id record."""
    nh = 0
    for _, h in set_order([n for n, _ in records]):
        nh = combine(nh, h)
    ch = 0
    for _, data in records:
        if not data:
            continue
        if len(data) >= 8 and data[:4] == b"PK\x07\x08":
            ch = combine(ch, struct.unpack_from("<I", data, 4)[0])
        ch = combine(ch, zlib.crc32(data))
    return "%020d%020d" % (nh, ch)


# -------------------------------------------------------------------------- zip checks
class Finding(Exception):
    pass


def parse_zip(data, fail, soft):
    """Walk PyTorch's zip layout; return [(name, method, usize, payload_bytes)]."""
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0 or eocd != len(data) - 22:
        fail("EOCD not at the end (comment or garbage?)")
    (_, d0, d1, n_disk, n_tot, cd_size, cd_off, clen) = struct.unpack_from("<IHHHHIIH", data, eocd)
    if (d0, d1, clen) != (0, 0, 0):
        fail("EOCD disk/comment fields not 0")
    loc = eocd - 20
    sig, ldisk, z64off, ndisks = struct.unpack_from("<IIQI", data, loc)
    if sig != 0x07064B50 or ldisk != 0 or ndisks != 1:
        fail("zip64 locator missing/wrong: %x %d %d" % (sig, ldisk, ndisks))
    z = struct.unpack_from("<IQHHIIQQQQ", data, z64off)
    if z64off != loc - 56:
        fail("zip64 EOCD not right before the locator")
    if z[0] != 0x06064B50 or z[1] != 44 or z[2] != 0x031E or z[3] != 45 or z[4] or z[5]:
        fail("zip64 EOCD header fields %r" % (z[:6],))
    n, n2, cdsz, cdoff = z[6], z[7], z[8], z[9]
    if n != n2 or n_disk != min(n, 0xFFFF) or n_tot != min(n, 0xFFFF):
        fail("entry counts")
    if cdsz != cd_size or (cd_off != cdoff and cd_off != 0xFFFFFFFF):
        fail("EOCD cd size/offset disagree with zip64 record")
    if cdoff + cdsz != z64off:
        fail("zip64 EOCD does not follow the central directory")

    entries = []
    p = cdoff
    for _ in range(n):
        (sig, made, need, flags, meth, tm, dt, crc, csz, usz, nl, xl, cl, disk, iattr,
         eattr, lho) = struct.unpack_from("<IHHHHHHIIIHHHHHII", data, p)
        if sig != 0x02014B50:
            fail("bad CD signature")
        name = data[p + 46:p + 46 + nl].decode("utf-8")
        if made != 0 or tm or dt or cl or disk or iattr or eattr:
            fail("%s: CD made-by/time/date/comment/attrs not 0" % name)
        if xl != 0:
            fail("%s: CD extra length %d (expected 0 below 4 GiB)" % (name, xl))
        entries.append((name, need, flags, meth, crc, csz, usz, lho))
        p += 46 + nl + xl + cl
    if p != cdoff + cdsz:
        fail("CD size mismatch")

    out = []
    pos = 0
    for (name, need, flags, meth, crc, csz, usz, lho) in entries:
        if lho != pos:
            fail("%s: local header at %d, expected %d (records not contiguous)" % (name, lho, pos))
        (sig, lneed, lflags, lmeth, ltm, ldt, lcrc, lcsz, lusz, nl, xl) = struct.unpack_from(
            "<IHHHHHIIIHH", data, lho)
        if sig != 0x04034B50:
            fail("%s: bad LFH signature" % name)
        if (lneed, lflags, lmeth) != (need, flags, meth):
            fail("%s: LFH/CD need/flags/method differ" % name)
        if need != (20 if meth == 8 else 0):
            fail("%s: version needed %d for method %d" % (name, need, meth))
        if flags != (0x0808 if usz else 0x0800):
            fail("%s: flags 0x%04x for size %d" % (name, flags, usz))
        if ltm or ldt or lcrc or lcsz or lusz:
            fail("%s: LFH time/date/crc/sizes not 0" % name)
        if data[lho + 30:lho + 30 + nl].decode("utf-8") != name:
            fail("%s: LFH name differs" % name)
        x = data[lho + 30 + nl:lho + 30 + nl + xl]
        hid, hlen = struct.unpack_from("<HH", x, 0)
        start = lho + 30 + nl + 4
        exp_pad = (64 - start % 64) % 64
        if hid != 0x4246 or hlen != xl - 4 or x[4:] != b"Z" * hlen or hlen != exp_pad:
            soft("%s: padding field %r (expected FB with %d Z)" % (name, x[:8], exp_pad))
        doff = lho + 30 + nl + xl
        if doff % 64:
            soft("%s: data at %d not 64-aligned" % (name, doff))
        payload = data[doff:doff + csz]
        pos = doff + csz
        if usz:
            dsig, dcrc, dcsz, dusz = struct.unpack_from("<IIII", data, pos)
            if (dsig, dcrc, dcsz, dusz) != (0x08074B50, crc, csz, usz):
                fail("%s: bad data descriptor" % name)
            pos += 16
        elif crc or csz:
            fail("%s: empty record with crc/size" % name)
        if meth == 8:
            raw = zlib.decompressobj(-15).decompress(payload)
        elif meth == 0:
            raw = payload
        else:
            fail("%s: method %d" % (name, meth))
        if len(raw) != usz or zlib.crc32(raw) != crc:
            fail("%s: size/CRC mismatch" % name)
        out.append((name, meth, usz, raw))
    if pos != cdoff:
        fail("central directory does not follow the last record")
    return out


class Stub:
    """Generic object for unpickling TorchScript pickles without torch."""

    def __init__(self, qual, args=()):
        self.qual, self.args, self.state = qual, args, None

    def __setstate__(self, state):
        self.state = state


def _find_class_factory(storages_seen):
    def find_class(module, name):
        qual = module + "." + name
        if module == "torch" and name.endswith("Storage"):
            return type(name, (), {"storage_name": name[:-len("Storage")]})

        class C(Stub):
            def __new__(cls, *a):
                o = object.__new__(cls)
                Stub.__init__(o, qual, a)
                return o

            def __init__(self, *a):
                pass

            def __call__(self, *a):  # noqa
                return Stub(qual, a)
        C.__qualname__ = qual
        return C
    return find_class


def check_pickle(rec, raw, fail):
    for op, arg, pos in pickletools.genops(raw):
        if op.name not in ALLOWED_OPS:
            fail("%s: opcode %s at %d" % (rec, op.name, pos))
        if op.name == "PROTO" and arg != 2:
            fail("%s: protocol %d" % (rec, arg))
        if op.name == "LONG1":
            if raw[pos + 1] != 8:
                fail("%s: LONG1 length %d" % (rec, raw[pos + 1]))
            if -2 ** 31 <= arg < 2 ** 31:
                fail("%s: LONG1 for %d (fits BININT)" % (rec, arg))
        if op.name == "BININT" and 0 <= arg <= 0xFFFF:
            fail("%s: BININT for %d" % (rec, arg))
        if op.name == "BININT2" and arg <= 0xFF:
            fail("%s: BININT2 for %d" % (rec, arg))


def load_pickle(raw, fail, rec):
    found = []

    class U(pickle._Unpickler):  # pure-Python unpickler: REDUCE may get a non-tuple (enums)
        def persistent_load(self, pid):
            found.append(pid)
            return ("storage", pid)

        def load_reduce(self):
            stack = self.stack
            args = stack.pop()
            func = stack[-1]
            stack[-1] = func(*args) if isinstance(args, tuple) else func(args)
        dispatch = dict(pickle._Unpickler.dispatch)
        dispatch[pickle.REDUCE[0]] = load_reduce
    u = U(__import__("io").BytesIO(raw))
    u.find_class = _find_class_factory(found)
    try:
        u.load()
    except Exception as e:
        fail("%s: could not unpickle with stubs: %s: %s" % (rec, type(e).__name__, e))
    return found


def check_archive(path):
    findings = []

    def fail(msg):
        findings.append(msg)
        raise Finding(msg)

    def soft(msg):
        findings.append(msg)

    with open(path, "rb") as f:
        data = f.read()
    try:
        entries = parse_zip(data, fail, soft)
    except Finding:
        return findings
    names = [e[0] for e in entries]
    prefix = names[0].split("/", 1)[0]
    if any(not n.startswith(prefix + "/") for n in names):
        soft("entries outside PREFIX/")
    rel = [n[len(prefix) + 1:] for n in names]
    recs = {r: e for r, e in zip(rel, entries)}

    # compression rule
    for r, (_, meth, usz, _raw) in zip(rel, entries):
        want = 8 if (r.startswith("code/") and (r.endswith(".py") or r.endswith(".py.debug_pkl"))
                     and usz > 200) else 0
        if meth != want:
            soft("%s: method %d, expected %d (size %d)" % (r, meth, want, usz))

    # record order
    def kind(r):
        if r.startswith("extra/"):
            return 0
        if re.fullmatch(r"data/\d+", r):
            return 1
        if r == "data.pkl":
            return 2
        if r.startswith("code/"):
            return 3
        if re.fullmatch(r"constants/\d+", r):
            return 4
        if r == "constants.pkl":
            return 5
        if r in ("version", ".data/version"):
            return 7
        if r == "byteorder":
            return 8
        if r == ".data/serialization_id":
            return 9
        return 6
    ks = [kind(r) for r in rel]
    if ks != sorted(ks) or ks[-1] != 9:
        soft("record order: %r" % rel)
    for pfx in ("data/", "constants/"):
        idx = [int(r[len(pfx):]) for r in rel if re.fullmatch(re.escape(pfx) + r"\d+", r)]
        if idx != list(range(len(idx))):
            soft("%s records not 0..N-1 in order: %r" % (pfx, idx))
    code = [r for r in rel if r.startswith("code/")]
    for i in range(0, len(code), 2):
        if i + 1 >= len(code) or code[i + 1] != code[i] + ".debug_pkl" or not code[i].endswith(".py"):
            soft("code records not (X.py, X.py.debug_pkl) pairs: %r" % code)
            break

    # version / byteorder
    vrec = [r for r in rel if r in ("version", ".data/version")]
    if len(vrec) != 1:
        soft("version records: %r" % vrec)
    else:
        txt = recs[vrec[0]][3]
        if not re.fullmatch(rb"\d+\n", txt):
            soft("version text %r" % txt)
        else:
            v = int(txt)
            if (v >= 6) != (vrec[0] == ".data/version"):
                soft("version %d stored in %s" % (v, vrec[0]))
    if recs.get("byteorder", (0, 0, 0, None))[3] != b"little":
        soft("byteorder record")

    # serialization id
    sid = recs.get(".data/serialization_id")
    if sid is None:
        soft("no serialization id")
    else:
        model = serialization_id([(r, e[3]) for r, e in zip(rel, entries)
                                  if r != ".data/serialization_id"])
        if sid[3].decode() != model:
            soft("serialization id %s != model %s" % (sid[3].decode(), model))

    # pickles
    for r, e in zip(rel, entries):
        if r.endswith(".pkl") or r.endswith(".debug_pkl"):
            try:
                check_pickle(r, e[3], soft)
            except Exception as ex:
                soft("%s: pickletools failed: %s" % (r, ex))
    for pk, pfx in (("data.pkl", "data/"), ("constants.pkl", "constants/")):
        if pk not in recs:
            soft("missing %s" % pk)
            continue
        try:
            pids = load_pickle(recs[pk][3], fail, pk)
        except Finding:
            continue
        keys = []
        for pid in pids:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                soft("%s: persistent id %r" % (pk, pid))
                continue
            _, st, key, loc, numel = pid
            if key not in keys:
                keys.append(key)
            rname = pfx + key
            if rname not in recs:
                soft("%s: storage record %s missing" % (pk, rname))
                continue
            size = recs[rname][2]
            want = 0 if loc == "meta" else numel * ELEMENT_SIZE.get(st.storage_name, -1)
            if size != want:
                soft("%s: %s is %d bytes, numel %d * %s (%s) = %d"
                     % (pk, rname, size, numel, st.storage_name, loc, want))
        if keys != [str(i) for i in range(len(keys))]:
            soft("%s: storage keys %r" % (pk, keys))
        n_rec = len([r for r in rel if re.fullmatch(re.escape(pfx) + r"\d+", r)])
        if n_rec != len(keys):
            soft("%s: %d storages but %d records" % (pk, len(keys), n_rec))
    return findings


def main(argv):
    bad = 0
    for p in argv:
        fs = check_archive(p)
        for f in fs:
            print("%s: %s" % (p, f))
        bad += bool(fs)
    print("checked %d archives, %d with findings" % (len(argv), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
