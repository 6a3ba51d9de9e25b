"""Corpus scenarios, run by oracle/makers/make_corpus.py with REAL PyTorch 2.15.0.

Every top-level function named `scenario_<name>(out)` is one scenario. make_corpus.py runs
each scenario in a fresh Python process (PYTHONHASHSEED=0, torch.manual_seed(0) first),
with this file executed as the `__main__` module under its recorded relative file name
`oracle/scenarios.py` (recorded.py), so classes defined here get qualified names `__torch__.<Name>` and
the `.debug_pkl` records name it so, with line numbers (moving a line changes the corpus).

`out` (make_corpus.Out) writes `<corpus>/<name>.pt` and `<corpus>/<name>.json`:
  out.save(m, name, to="buffer"|"path", extra_files=None, map_location_cpu=False)
  out.emit(name, data_bytes, map_location_cpu=False)
  out.note(msg)                                        (stderr)

The first group ports class TestSaveLoad of PyTorch's test/jit/test_save_load.py (seed
file ../shared/seed/000_21ac96dc17ecb6bf.txt), keeping the module definitions and the
order of creation, registry clearing and intermediate saves.
"""
import io
import math
from enum import Enum
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

try:
    from torch.jit import Final
except ImportError:  # pragma: no cover
    from typing import Final

try:
    from torch.testing._internal.jit_utils import clear_class_registry
except Exception:  # expecttest missing: same effect via the public-ish hooks
    def clear_class_registry():
        torch._C._jit_clear_class_registry()
        torch.jit._recursive.concrete_type_store = torch.jit._recursive.ConcreteTypeStore()
        torch.jit._state._clear_class_state()


def _buffer_save(m, **kw):
    b = io.BytesIO()
    torch.jit.save(m, b, **kw)
    b.seek(0)
    return b


def _export_import_copy(out, m, name, map_location=None, map_location_cpu=False):
    """JitTestCase.getExportImportCopy: save to a buffer, load, save the loaded module again.

    Writes <name>.pt (fresh scripted module) and <name>_resaved.pt (the loaded copy saved
    again, to a buffer; the test uses a temporary file name, which would make the prefix
    random)."""
    data = out.save(m, name, map_location_cpu=map_location_cpu)
    imported = torch.jit.load(io.BytesIO(data), map_location=map_location)
    out.save(imported, name + "_resaved", map_location_cpu=map_location_cpu)
    return torch.jit.load(io.BytesIO(out.read(name + "_resaved")), map_location=map_location)


# ---------------------------------------------------------------------------------------
# TestSaveLoad ports
# ---------------------------------------------------------------------------------------

def scenario_different_modules(out, fb=False):
    class Foo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 2)
            self.bar = torch.nn.Linear(2, 2)

        def forward(self, x):
            x = self.foo(x)
            x = self.bar(x)
            return x

    first_script_module = torch.jit.script(Foo())
    first_saved_module = _to_buffer(
        out, fb, first_script_module,
        "different_modules_first",
    )

    clear_class_registry()

    class Foo(torch.nn.Module):  # noqa: F811
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 2)

        def forward(self, x):
            x = self.foo(x)
            return x

    second_script_module = torch.jit.script(Foo())
    second_saved_module = _to_buffer(  # TestSaveLoad saves a second scripted Foo()
        out, fb, second_script_module if fb else torch.jit.script(Foo()),
        "different_modules_second",
    )

    clear_class_registry()

    assert first_script_module._c.qualified_name == second_script_module._c.qualified_name

    class ContainsBoth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("second", torch.jit.load(second_saved_module))
            self.add_module("first", torch.jit.load(first_saved_module))

        def forward(self, x):
            x = self.first(x)
            x = self.second(x)
            return x

    sm = torch.jit.script(ContainsBoth())
    contains_both = _to_buffer(
        out, fb, sm,
        "different_modules",
    )
    sm = torch.jit.load(contains_both)
    if not fb:  # second cycle (mangling.md 2.3): saving the loaded module again
        out.save(sm, "different_modules_resaved")


def scenario_different_functions(out, fb=False):
    def lol(x):
        return x

    class Foo(torch.nn.Module):
        def forward(self, x):
            return lol(x)

    first_script_module = torch.jit.script(Foo())
    first_saved_module = _to_buffer(
        out, fb, first_script_module,
        "different_functions_first",
    )

    clear_class_registry()

    def lol(x):  # noqa: F811
        return "hello"

    class Foo(torch.nn.Module):  # noqa: F811
        def forward(self, x):
            return lol(x)

    second_script_module = torch.jit.script(Foo())
    second_saved_module = _to_buffer(  # TestSaveLoad saves a second scripted Foo()
        out, fb, second_script_module if fb else torch.jit.script(Foo()),
        "different_functions_second",
    )

    clear_class_registry()

    assert first_script_module._c.qualified_name == second_script_module._c.qualified_name

    class ContainsBoth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("second", torch.jit.load(second_saved_module))
            self.add_module("first", torch.jit.load(first_saved_module))

        def forward(self, x):
            x = self.first(x)
            x = self.second(x)
            return x

    sm = torch.jit.script(ContainsBoth())
    contains_both = _to_buffer(
        out, fb, sm,
        "different_functions",
    )
    sm = torch.jit.load(contains_both)


def scenario_different_interfaces(out, fb=False):
    @torch.jit.interface
    class MyInterface:
        def bar(self, x: Tensor) -> Tensor:
            pass

    @torch.jit.script
    class ImplementInterface:
        def __init__(self):
            pass

        def bar(self, x):
            return x

    class Foo(torch.nn.Module):
        __annotations__ = {"interface": MyInterface}

        def __init__(self):
            super().__init__()
            self.interface = ImplementInterface()

        def forward(self, x):
            return self.interface.bar(x)

    first_script_module = torch.jit.script(Foo())
    first_saved_module = _to_buffer(
        out, fb, first_script_module,
        "different_interfaces_first",
    )

    clear_class_registry()

    @torch.jit.interface
    class MyInterface:  # noqa: F811
        def not_bar(self, x: Tensor) -> Tensor:
            pass

    @torch.jit.script  # noqa: F811
    class ImplementInterface:  # noqa: F811
        def __init__(self):
            pass

        def not_bar(self, x):
            return x

    class Foo(torch.nn.Module):  # noqa: F811
        __annotations__ = {"interface": MyInterface}

        def __init__(self):
            super().__init__()
            self.interface = ImplementInterface()

        def forward(self, x):
            return self.interface.not_bar(x)

    second_script_module = torch.jit.script(Foo())
    second_saved_module = _to_buffer(  # TestSaveLoad saves a second scripted Foo()
        out, fb, second_script_module if fb else torch.jit.script(Foo()),
        "different_interfaces_second",
    )

    clear_class_registry()

    assert first_script_module._c.qualified_name == second_script_module._c.qualified_name

    class ContainsBoth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("second", torch.jit.load(second_saved_module))
            self.add_module("first", torch.jit.load(first_saved_module))

        def forward(self, x):
            x = self.first(x)
            x = self.second(x)
            return x

    sm = torch.jit.script(ContainsBoth())
    contains_both = _to_buffer(
        out, fb, sm,
        "different_interfaces",
    )
    sm = torch.jit.load(contains_both)


def scenario_many_collisions(out, fb=False):
    """TestSaveLoadFlatbuffer.test_many_collisions, saved with the zip writer (torch.jit.save
    to a buffer) or, fb=True, with the test's flatbuffer writer (fb_many_collisions*.ptl)."""

    class MyCoolNamedTuple(NamedTuple):
        a: int

    @torch.jit.interface
    class MyInterface:
        def bar(self, x: Tensor) -> Tensor:
            pass

    @torch.jit.script
    class ImplementInterface:
        def __init__(self):
            pass

        def bar(self, x):
            return x

    def lol(x):
        return x

    class Foo(torch.nn.Module):
        interface: MyInterface

        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 2)
            self.bar = torch.nn.Linear(2, 2)
            self.interface = ImplementInterface()

        def forward(self, x):
            x = self.foo(x)
            x = self.bar(x)
            x = lol(x)
            x = self.interface.bar(x)

            return x, MyCoolNamedTuple(a=5)

    first_script_module = torch.jit.script(Foo())
    first_saved_module = _to_buffer(out, fb, first_script_module,
                                 "many_collisions_first")

    clear_class_registry()

    @torch.jit.interface
    class MyInterface:  # noqa: F811
        def not_bar(self, x: Tensor) -> Tensor:
            pass

    @torch.jit.script  # noqa: F811
    class ImplementInterface:  # noqa: F811
        def __init__(self):
            pass

        def not_bar(self, x):
            return x

    def lol(x):  # noqa: F811
        return "asdofij"

    class MyCoolNamedTuple(NamedTuple):  # noqa: F811
        a: str

    class Foo(torch.nn.Module):  # noqa: F811
        interface: MyInterface

        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 2)
            self.interface = ImplementInterface()

        def forward(self, x):
            x = self.foo(x)
            self.interface.not_bar(x)
            # The seed text lost this line (its comment still describes it); upstream
            # PyTorch has it, and without it ContainsBoth fails to script (Tensor + str).
            x = lol(x)
            return x, MyCoolNamedTuple(a="hello")

    second_script_module = torch.jit.script(Foo())
    second_saved_module = _to_buffer(out, fb, second_script_module,
                                  "many_collisions_second")

    clear_class_registry()

    assert first_script_module._c.qualified_name == second_script_module._c.qualified_name

    class ContainsBoth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("second", torch.jit.load(second_saved_module))
            self.add_module("first", torch.jit.load(first_saved_module))

        def forward(self, x):
            x, named_tuple_1 = self.first(x)
            x, named_tuple_2 = self.second(x)
            return len(x + named_tuple_2.a) + named_tuple_1.a

    sm = torch.jit.script(ContainsBoth())
    contains_both = _to_buffer(out, fb, sm,
                               "many_collisions")
    sm = torch.jit.load(contains_both)


def scenario_nested_collisions(out):
    """mangling.md 2.3: two loaded copies of the ContainsBoth archive under Outer.x / Outer.y,
    plus three separately loaded same-named (`__torch__.Foo`) archives under one parent."""

    class Foo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 2)
            self.bar = torch.nn.Linear(2, 2)

        def forward(self, x):
            x = self.foo(x)
            x = self.bar(x)
            return x

    first_saved_module = _buffer_save(torch.jit.script(Foo()))

    clear_class_registry()

    class Foo(torch.nn.Module):  # noqa: F811
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 2)

        def forward(self, x):
            x = self.foo(x)
            return x

    second_saved_module = _buffer_save(torch.jit.script(Foo()))

    clear_class_registry()

    class Foo(torch.nn.Module):  # noqa: F811
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 3)
            self.register_buffer("count", torch.zeros(1, dtype=torch.int64))

        def forward(self, x):
            return self.foo(x) + self.count

    third_saved_module = _buffer_save(torch.jit.script(Foo()))

    clear_class_registry()

    class ContainsBoth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("second", torch.jit.load(io.BytesIO(second_saved_module.getvalue())))
            self.add_module("first", torch.jit.load(io.BytesIO(first_saved_module.getvalue())))

        def forward(self, x):
            x = self.first(x)
            x = self.second(x)
            return x

    contains_both = _buffer_save(torch.jit.script(ContainsBoth()))
    cb_bytes = contains_both.getvalue()

    clear_class_registry()

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = torch.jit.load(io.BytesIO(cb_bytes))
            self.y = torch.jit.load(io.BytesIO(cb_bytes))

        def forward(self, t):
            return self.y(self.x(t))

    out.save(torch.jit.script(Outer()), "nested_collisions")

    clear_class_registry()

    class ManyFoos(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.jit.load(io.BytesIO(first_saved_module.getvalue()))
            self.b = torch.jit.load(io.BytesIO(second_saved_module.getvalue()))
            self.c = torch.jit.load(io.BytesIO(third_saved_module.getvalue()))
            self.d = torch.jit.load(io.BytesIO(first_saved_module.getvalue()))

        def forward(self, x):
            x = self.a(x)
            x = self.b(x)
            x = self.d(x)
            return self.c(x)

    out.save(torch.jit.script(ManyFoos()), "many_same_name")


def scenario_extra_files(out):
    class MyMod(torch.jit.ScriptModule):
        @torch.jit.script_method
        def forward(self, a):
            return a

    value = b"bar\x00\xffbaz"

    expected_extra_files = {}
    expected_extra_files["foo"] = value
    expected_extra_files["foo2"] = "bar"
    m = MyMod()

    # Save to a file (prefix = file base name): m.save first, then torch.jit.save over it,
    # as in the test; the corpus keeps the torch.jit.save result.
    fname = out.path("extra_files")
    m.save(fname, _extra_files=expected_extra_files)
    with open(fname, "rb") as f:
        via_method = f.read()
    extra_files = {"foo": "", "foo2": None}
    torch.jit.load(fname, _extra_files=extra_files)
    assert extra_files["foo"] == value
    assert extra_files["foo2"] == b"bar"
    torch.jit.save(m, fname, _extra_files=expected_extra_files)
    with open(fname, "rb") as f:
        via_api = f.read()
    if via_method != via_api:
        out.note("extra_files: ScriptModule.save(path) != torch.jit.save(path)")
    out.done_path("extra_files")

    # Save to a buffer (prefix 'archive').
    data_method = m.save_to_buffer(_extra_files=expected_extra_files)
    buffer = io.BytesIO()
    torch.jit.save(m, buffer, _extra_files=expected_extra_files)
    if data_method != buffer.getvalue():
        out.note("extra_files: save_to_buffer() != torch.jit.save(BytesIO)")
    out.emit("extra_files_buffer", buffer.getvalue())
    buffer.seek(0)
    extra_files = {"foo": ""}
    torch.jit.load(buffer, _extra_files=extra_files)
    assert extra_files["foo"] == value

    # "Non-existent file 'bar'": the test expects a RuntimeError. In 2.15 that error comes
    # from the exhausted buffer ("istream reader failed"), not from the missing name: on a
    # fresh buffer a missing name is silently returned as b"".
    try:
        extra_files["bar"] = ""
        torch.jit.load(buffer, _extra_files=extra_files)
        raise AssertionError("loading from the exhausted buffer did not raise")
    except RuntimeError:
        pass
    extra_files = {"foo": "", "bar": "sentinel"}
    torch.jit.load(io.BytesIO(buffer.getvalue()), _extra_files=extra_files)
    if extra_files["bar"] == b"":
        out.note("extra_files: a missing extra file name loads as b'' (no error)")

    # Many names: '/', unicode, empty, PK\x07\x08 start, 10 KB binary.
    blob = bytearray()
    h = b"ptconform"
    import hashlib
    while len(blob) < 10 * 1024:
        h = hashlib.sha256(h).digest()
        blob += h
    many = {
        "a": b"A",
        "b.json": b'{"k": [1, 2, 3]}',
        "config.yaml": "name: tiny\nlayers: 2\n",
        "dir/sub.txt": b"nested name with a slash\n",
        "dir/deeper/leaf.bin": bytes(range(256)),
        "\u00fcn\u00ef\u00e7\u00f8d\u00e9-\u540d\u524d.txt": "unicode name \u2603\n",
        "empty": b"",
        "pk_magic": b"PK\x07\x08" + b"\x01\x02\x03\x04" + b"descriptor-like start",
        "pk_local": b"PK\x03\x04not really a header",
        "blob10k.bin": bytes(blob[:10 * 1024]),
        "producer_info.json": b'{"producer": "ptconform oracle"}',
        "model.txt": b"model",
        "spaces in name": b"  ",
        "x" * 100: b"long name",
        "UPPER": b"upper",
        "123": b"digits",
        ".hidden": b"dot",
        "trailing_newline\n": b"nl",
        "z_last": b"\xff" * 7,
        "semi;colon=eq": b";=",
    }
    buf = io.BytesIO()
    torch.jit.save(m, buf, _extra_files=many)
    out.emit("extra_files_many", buf.getvalue())

    # A NUL inside an extra-file name: the zip entry name is cut at the NUL
    # ("archive/extra/nul") but the 64-byte padding is computed from the full name length,
    # so this record's data is NOT 64-byte aligned. Kept in corpus/quirks/ (see README).
    buf = io.BytesIO()
    torch.jit.save(m, buf, _extra_files={"nul\x00inside": b"value of a name with a NUL",
                                         "after": b"aligned again?"})
    out.emit("quirks/extra_files_nul_name", buf.getvalue())


def scenario_namedtuple_input_only(out):
    global FooTuple

    class FooTuple(NamedTuple):
        a: int

    class MyModule(torch.nn.Module):
        def forward(self, x: FooTuple) -> torch.Tensor:
            return torch.tensor(3)

    m_loaded = _export_import_copy(out, torch.jit.script(MyModule()), "namedtuple_input_only")
    output = m_loaded(FooTuple(a=5))
    assert torch.equal(output, torch.tensor(3))


def scenario_namedtuple_input_only_forwardref(out):
    global FooTuple

    class FooTuple(NamedTuple):
        a: "int"

    class MyModule(torch.nn.Module):
        def forward(self, x: FooTuple) -> torch.Tensor:
            return torch.tensor(3)

    m_loaded = _export_import_copy(out, torch.jit.script(MyModule()),
                                   "namedtuple_input_only_forwardref")
    output = m_loaded(FooTuple(a=5))
    assert torch.equal(output, torch.tensor(3))


def scenario_namedtuple_output_only(out):
    global FooTuple

    class FooTuple(NamedTuple):
        a: int

    class MyModule(torch.nn.Module):
        def forward(self) -> Optional[FooTuple]:
            return None

    m_loaded = _export_import_copy(out, torch.jit.script(MyModule()), "namedtuple_output_only")
    output = m_loaded()
    assert output is None


def scenario_params_buffers_submodules(out, fb=False):
    class Submodule(torch.nn.Module):
        pass

    class TestModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("submodule_a", Submodule())
            self.register_parameter(
                "parameter_a", torch.nn.Parameter(torch.randn(4))
            )
            self.register_buffer("buffer", torch.randn(4))
            self.t = torch.rand(4)  # not buffer

            self.parameter_b = torch.nn.Parameter(torch.randn(4))
            self.submodule_b = Submodule()

    m = TestModule()
    m_loaded = (_flatbuffer_export_import_copy(out, torch.jit.script(m), "fb_save_load_params_buffers_submodules")
                if fb else _export_import_copy(out, torch.jit.script(m), "params_buffers_submodules"))
    assert [n for n, _ in m.named_modules()] == [n for n, _ in m_loaded.named_modules()]
    for m_p, loaded_p in zip(m.parameters(), m_loaded.parameters()):
        assert torch.equal(m_p, loaded_p)
    for (mn, mb), (ln, lb) in zip(m.named_buffers(), m_loaded.named_buffers()):
        assert mn == ln and torch.equal(mb, lb)


def scenario_meta_tensors(out):
    class Foo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 3, device="meta")
            self.bar = torch.nn.Linear(3, 4)
            self.register_buffer("buffer", torch.randn(4, device="meta"))

        def forward(self, x):
            x = self.foo(x)
            x = self.bar(x)
            return x

    m = Foo()
    m_loaded = _export_import_copy(out, torch.jit.script(m), "meta_tensors")
    params = dict(m_loaded.named_parameters())
    buffers = dict(m_loaded.named_buffers())
    assert params["foo.weight"].is_meta and params["foo.bias"].is_meta
    assert not params["bar.weight"].is_meta and not params["bar.bias"].is_meta
    assert buffers["buffer"].is_meta


def scenario_meta_tensors_to_device(out):
    class Foo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.foo = torch.nn.Linear(2, 3, device="meta")
            self.bar = torch.nn.Linear(3, 4)

        def forward(self, x):
            x = self.foo(x)
            x = self.bar(x)
            return x

    m = Foo()
    m_loaded = _export_import_copy(out, torch.jit.script(m), "meta_tensors_to_device",
                                   map_location="cpu", map_location_cpu=True)
    params = dict(m_loaded.named_parameters())
    assert params["foo.weight"].is_meta and params["foo.bias"].is_meta
    assert params["bar.weight"].is_cpu and params["bar.bias"].is_cpu


def scenario_large_string_small(out):
    """test_save_load_large_string_attribute with a 1000-byte string instead of 2**32+1
    (the > 4 GiB case is generated by the Rust tests)."""

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = "x" * 1000

        def forward(self, i) -> int:
            return len(self.x) + i.numel()

    inp = torch.ones(0)
    ts = torch.jit.script(Model())
    ts_output = ts(inp)
    b = io.BytesIO(ts.save_to_buffer())
    out.emit("large_string_small", b.getvalue())
    loaded_ts = torch.jit.load(b)
    assert loaded_ts(inp) == ts_output


# ---------------------------------------------------------------------------------------
# Coverage scenarios
# ---------------------------------------------------------------------------------------

def scenario_linear(out):
    out.save(torch.jit.script(torch.nn.Linear(2, 3)), "linear")


def scenario_tiny(out):
    import tinymod  # class T(nn.Module): forward returns x (zip-archive.md section 7)
    out.save(torch.jit.script(tinymod.T()), "tiny")


def scenario_prefix_path_name(out):
    class PrefixM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)

    out.save(torch.jit.script(PrefixM()), "prefix_path_name", to="path")


# pickle.md section 6 (in ScalarType order); complex and bool are in it already.
DTYPE_NAMES = [
    "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
    "complex32", "complex64", "complex128", "bool", "qint8", "quint8", "qint32",
    "bfloat16", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
    "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz",
    "uint16", "uint32", "uint64",
    "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7",
    "int1", "int2", "int3", "int4", "int5", "int6", "int7",
    "float8_e8m0fnu", "float4_e2m1fn_x2",
]


def _make_dtype_tensor(dtype):
    """Return (tensor, how) for a small tensor of `dtype`, trying several recipes."""
    errors = []
    if dtype in (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4):
        recipes = [("quantize_per_tensor(arange(6.), 0.5, 1)",
                    lambda: torch.quantize_per_tensor(torch.arange(6, dtype=torch.float32),
                                                      0.5, 1, dtype))]
    else:
        try:
            size = torch.empty(0, dtype=dtype).element_size()
        except Exception:
            size = 1
        src_for_size = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        recipes = [
            ("arange(6).to(dtype)", lambda: torch.arange(6).to(dtype)),
            ("arange(6, dtype=%s).view(dtype)" % src_for_size.get(size),
             lambda: torch.arange(6, dtype=src_for_size[size]).view(dtype)),
            ("zeros(6, dtype=dtype)", lambda: torch.zeros(6, dtype=dtype)),
            ("empty(6, dtype=dtype)", lambda: torch.empty(6, dtype=dtype)),
        ]
        if dtype is torch.complex32:
            recipes.insert(0, ("arange(6, float16).view(complex32)",
                               lambda: torch.arange(6, dtype=torch.float16).view(torch.complex32)))
    for how, fn in recipes:
        try:
            t = fn()
            if t.dtype != dtype:
                raise TypeError("got %s" % t.dtype)
            return t, how
        except Exception as e:
            errors.append("%s: %s: %s" % (how, type(e).__name__, str(e).splitlines()[0][:120]))
    raise RuntimeError("; ".join(errors))


def scenario_dtypes(out):
    class DtypeHolder(torch.nn.Module):
        def forward(self, x):
            return x

    kept = []
    for name in DTYPE_NAMES:
        dtype = getattr(torch, name, None)
        if dtype is None:
            out.note("dtypes: skip %s: torch.%s does not exist" % (name, name))
            continue
        try:
            t, how = _make_dtype_tensor(dtype)
        except Exception as e:
            out.note("dtypes: skip %s: cannot create on CPU: %s" % (name, e))
            continue
        # check the dtype survives a save/load on its own
        try:
            probe = DtypeHolder()
            probe.register_buffer("b", t)
            b = _buffer_save(torch.jit.script(probe))
            back = dict(torch.jit.load(b).named_buffers())["b"]
            if back.dtype != dtype:
                raise TypeError("loaded back as %s" % back.dtype)
        except Exception as e:
            out.note("dtypes: skip %s: save/load failed: %s: %s"
                     % (name, type(e).__name__, str(e).splitlines()[0][:200]))
            continue
        out.note("dtypes: %s via %s" % (name, how))
        kept.append(("b_" + name, t))

    m = DtypeHolder()
    for bname, t in kept:
        m.register_buffer(bname, t)
    out.save(torch.jit.script(m), "dtypes")


def scenario_views(out):
    class Views(torch.nn.Module):
        def __init__(self):
            super().__init__()
            base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
            self.register_buffer("base", base)
            self.register_buffer("transposed", base.t())                 # (4,3) strides (1,4)
            self.register_buffer("sliced", base[1:, 2:])                # offset 6
            self.register_buffer("transposed_slice", base.t()[1:3])     # view of a view
            self.register_buffer("slice_only", torch.arange(10, dtype=torch.int32)[2:5])
            self.register_buffer("expanded", torch.tensor([1.0, 2.0, 3.0]).expand(4, 3))
            self.register_buffer("zero_dim", torch.tensor(2.5))
            self.register_buffer("zero_elem", torch.zeros(0, 3))
            c = torch.complex(torch.arange(4, dtype=torch.float32),
                              torch.arange(4, dtype=torch.float32) + 10)
            self.register_buffer("complex_base", c)
            self.register_buffer("conj_view", torch.conj(c))            # conj bit
            n = torch.arange(5, dtype=torch.float64)
            self.register_buffer("neg_base", n)
            self.register_buffer("neg_view", torch._neg_view(n))        # neg bit
            shared = torch.full((2, 2), 7.0)
            self.register_buffer("shared", shared)
            self.shared_alias = shared                                  # same tensor, 2nd attribute
            self.shared_list = [shared, base]                           # List[Tensor] of shared ones

        def forward(self, x):
            return x + self.shared_alias.sum()

    m = Views()
    assert m.conj_view.is_conj() and m.neg_view.is_neg()
    out.save(torch.jit.script(m), "views")


def scenario_quantized(out):
    class Quantized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            x = torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.0
            self.register_buffer("pt_quint8", torch.quantize_per_tensor(x, 0.5, 3, torch.quint8))
            self.register_buffer("pt_qint8", torch.quantize_per_tensor(x, 0.25, -2, torch.qint8))
            self.register_buffer("pt_qint32", torch.quantize_per_tensor(x, 0.1, 7, torch.qint32))
            self.register_buffer("pc_qint8_axis0", torch.quantize_per_channel(
                x, torch.tensor([0.1, 0.2], dtype=torch.float64),
                torch.tensor([0, 1], dtype=torch.int64), 0, torch.qint8))
            self.register_buffer("pc_quint8_axis1", torch.quantize_per_channel(
                x, torch.tensor([0.5, 0.25, 0.125], dtype=torch.float64),
                torch.tensor([1, 2, 3], dtype=torch.int64), 1, torch.quint8))
            self.q_attr = torch.quantize_per_tensor(torch.ones(3), 1.0, 0, torch.quint8)

        def forward(self, x):
            return x + self.pt_quint8.dequantize().sum()

    out.save(torch.jit.script(Quantized()), "quantized")


class Color(Enum):
    RED = 1
    GREEN = 2


class AttrPoint(NamedTuple):
    x: int
    y: float


@torch.jit.script
class Inner:
    def __init__(self, a: int, s: str):
        self.a = a
        self.s = s
        self.t = torch.ones(2)
        self.items: List[int] = [a, a + 1]

    def total(self) -> int:
        return self.a + len(self.items)


class Attributes(torch.nn.Module):
    K_INT: Final[int]
    K_F2: Final[float]
    K_F01: Final[float]
    K_STR: Final[str]
    K_STR_ASCII: Final[str]
    K_TUPLE: Final[Tuple[int, float, str]]
    K_NONE: Final[None]
    K_BOOL: Final[bool]
    K_NEG: Final[int]

    opt_none: Optional[int]
    opt_some: Optional[str]
    point: AttrPoint
    empty_list: List[int]
    empty_dict: Dict[str, Tensor]

    def __init__(self):
        super().__init__()
        self.K_INT = 7
        self.K_F2 = 2.0
        self.K_F01 = 0.1
        self.K_STR = 'const "q"\n\u00e9'              # non-ASCII: goes to constants.pkl
        self.K_STR_ASCII = 'say "hi"\n\t\\ \'x\' \x01'  # printable escapes in code
        self.K_TUPLE = (1, 0.5, "t")
        self.K_NONE = None
        self.K_BOOL = True
        self.K_NEG = -5

        self.i = 42
        self.neg_i = -1
        self.big_i = 2 ** 40
        self.min_i = -(2 ** 63)
        self.f = 1.5
        self.f_nan = float("nan")
        self.f_inf = float("inf")
        self.f_ninf = float("-inf")
        self.f_negzero = -0.0
        self.c = complex(1.5, -2.0)
        self.s = 'say "hi"\nline2\t\u00fcnicode \u2603 \U0001F600'
        self.s_empty = ""
        self.flag = True
        self.flag_off = False
        self.opt_none = None
        self.opt_some = "some"
        self.li = [1, -2, 300, 70000, 2 ** 40]
        self.lf = [0.5, -1.25, float("inf")]
        self.lb = [True, False, True]
        self.lt = [torch.ones(2), torch.zeros(1, dtype=torch.int64)]
        self.ls = ["a", "b", "a"]
        self.lli = [[1, 2], [], [3]]
        self.empty_list = []
        self.dsi = {"one": 1, "two": 2}
        self.dit = {3: torch.ones(1), 1: torch.zeros(2)}
        self.empty_dict = {}
        self.tup = (1, "two", 3.0, False)
        self.tup2 = (1, 2)
        self.dev = torch.device("cpu")
        self.inner = Inner(5, "inner")
        self.color = Color.GREEN
        self.point = AttrPoint(3, 4.5)
        self.t = torch.arange(3)

    def forward(self, x: Tensor) -> Tensor:
        if self.color == Color.RED:
            return x
        if self.opt_some is not None:
            x = x + len(self.opt_some)
        return x + self.K_INT + self.K_F2 + self.inner.total() + self.point.x


def scenario_attributes(out):
    out.save(torch.jit.script(Attributes()), "attributes")


def scenario_containers(out):
    class Containers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
            self.mlist = torch.nn.ModuleList([
                torch.nn.Linear(2, 2),
                torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()),
            ])
            self.mdict = torch.nn.ModuleDict({
                "a": torch.nn.Linear(2, 2),
                "b": torch.nn.Identity(),
                "nested": torch.nn.ModuleList([torch.nn.ReLU()]),
            })

        def forward(self, x):
            x = self.seq(x)
            for m in self.mlist:
                x = m(x)
            x = self.mdict["a"](x)
            x = self.mdict["b"](x)
            for m in self.mdict["nested"]:
                x = m(x)
            return x

    out.save(torch.jit.script(Containers()), "containers")


def scenario_getstate(out):
    class WithState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = 3
            self.name = "state"
            self.weight = torch.arange(4, dtype=torch.float32)
            # (no submodules: __setstate__ cannot initialize them, and loading then fails
            # with "The field 'lin' was left uninitialized after '__setstate__'")

        @torch.jit.export
        def __getstate__(self) -> Tuple[int, str, Tensor, bool]:
            return (self.a, self.name, self.weight, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[int, str, Tensor, bool]) -> None:
            self.a = state[0]
            self.name = state[1]
            self.weight = state[2]
            self.training = state[3]

        def forward(self, x):
            return x * self.weight[0] + self.a

    out.save(torch.jit.script(WithState()), "getstate")


def scenario_hooks(out):
    class Hooked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.lin(x)

    def pre_hook(self, input: Tuple[Tensor]) -> Tuple[Tensor]:
        return (input[0] * 2,)

    def post_hook(self, input: Tuple[Tensor], output: Tensor) -> Tensor:
        return output - 1

    m = Hooked()
    m.register_forward_pre_hook(pre_hook)
    m.register_forward_hook(post_hook)
    try:
        sm = torch.jit.script(m)
    except Exception as e:
        out.note("hooks: skipped, torch.jit.script failed: %s: %s" % (type(e).__name__, e))
        return
    out.save(sm, "hooks")


def scenario_version_gelu(out):
    class Gelu(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x)

    out.save(torch.jit.script(Gelu()), "version_gelu")


def scenario_version_div(out):
    class Div(torch.nn.Module):
        def forward(self, x):
            return x / 2

    out.save(torch.jit.script(Div()), "version_div")


def scenario_frozen_constants(out):
    class Frozen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)
            self.register_buffer("offset", torch.tensor([0.5, -0.5]))

        def forward(self, x):
            return self.lin(x) + self.offset

    fm = torch.jit.freeze(torch.jit.script(Frozen().eval()))
    out.save(fm, "frozen_constants")


def scenario_bigcode(out):
    class BigCode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(3)])
            self.scales: List[float] = [0.5, 1.0, 2.0]

        def forward(self, x: Tensor, n: int = 3, mode: str = "sum") -> Tensor:
            acc = torch.zeros_like(x)
            i = 0
            for layer in self.layers:
                y = layer(x)
                if mode == "sum":
                    acc = acc + y * self.scales[i]
                elif mode == "max":
                    acc = torch.maximum(acc, y)
                else:
                    acc = acc - y
                i += 1
            k = 0
            while k < n:
                acc = torch.relu(acc) + torch.sigmoid(acc) * 0.25
                if bool(acc.sum() > 100.0):
                    break
                k += 1
            out: List[Tensor] = []
            for j in range(n):
                out.append(acc * j)
            return torch.stack(out).mean(0) + torch.tanh(x).clamp(-0.5, 0.5)

        @torch.jit.export
        def describe(self, prefix: str = "bigcode") -> Dict[str, int]:
            d: Dict[str, int] = {}
            d[prefix + "_layers"] = len(self.layers)
            d[prefix + "_scales"] = len(self.scales)
            return d

    out.save(torch.jit.script(BigCode()), "bigcode")


def scenario_interfaces_classes(out):
    from pkgx import mods
    out.save(torch.jit.script(mods.Top()), "interfaces_classes")


# ---------------------------------------------------------------------------------------
# TorchBind classes (issue 15): objects of C++ classes registered with torch.classes,
# serialized through their __getstate__ (quantized packed parameters, RNN cell params).
# ---------------------------------------------------------------------------------------

def scenario_torchbind_static(out):
    import torch.ao.nn.quantized as nnq

    class StaticQuantized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nnq.Linear(4, 3)
            self.conv = nnq.Conv2d(2, 2, 3)
            self.conv3 = nnq.Conv3d(1, 2, 2)
            self.emb = nnq.Embedding(10, 4)

        def forward(self, x: Tensor) -> Tensor:
            return self.lin(x)

    out.save(torch.jit.script(StaticQuantized().eval()), "torchbind_static")


def scenario_torchbind_dynamic(out):
    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 5, num_layers=2)
            self.gru = torch.nn.GRU(4, 3)
            self.fc = torch.nn.Linear(5, 2)

        def forward(self, x: Tensor) -> Tensor:
            y, _ = self.lstm(x)
            return self.fc(y)

    m = torch.ao.quantization.quantize_dynamic(
        Recurrent().eval(), {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
    )
    out.save(torch.jit.script(m), "torchbind_dynamic")


def scenario_torchbind_frozen(out):
    import torch.ao.nn.quantized as nnq

    class Frozen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nnq.Conv2d(2, 2, 3)
            self.lin = nnq.Linear(4, 3)

        def forward(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
            return self.conv(x), self.lin(y)

    out.save(torch.jit.freeze(torch.jit.script(Frozen().eval())), "torchbind_frozen")


# ---------------------------------------------------------------------------------------
# Other file kinds PyTorch writes (issue 15): mobile zips (_save_for_lite_interpreter,
# with bytecode.pkl, constants as constants/N.storage, optional mobile debug records),
# traced modules (traced_inputs.pkl), frozen library modules, version rules.
# ---------------------------------------------------------------------------------------

def scenario_mobile_zip(out):
    class WithConstants(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)
            self.register_buffer("offset", torch.tensor([0.5, -0.5]))

        def forward(self, x):
            return self.lin(x) + self.offset

    scripted = torch.jit.script(WithConstants().eval())
    out.emit("mobile_zip", scripted._save_to_buffer_for_lite_interpreter())
    frozen = torch.jit.freeze(scripted)
    out.emit("mobile_zip_frozen", frozen._save_to_buffer_for_lite_interpreter())
    out.emit(
        "mobile_zip_debug",
        frozen._save_to_buffer_for_lite_interpreter(_save_mobile_debug_info=True),
    )
    m = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(torch.nn.Linear(4, 3)).eval(), {torch.nn.Linear}, dtype=torch.qint8
    )
    out.emit("mobile_zip_torchbind", torch.jit.script(m)._save_to_buffer_for_lite_interpreter())


def scenario_traced(out):
    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x, y):
            return self.lin(x) + y.sum()

    t = torch.jit.trace(Traced().eval(), (torch.randn(2, 4), torch.randn(5)))
    out.save(t, "traced")
    out.emit("traced_mobile_zip", t._save_to_buffer_for_lite_interpreter())


def scenario_frozen_transformer(out):
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16)
    m = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    frozen = out.judge_by_zip_twin(torch.jit.freeze(torch.jit.script(m)))
    out.save(frozen, "frozen_transformer")


def scenario_version_div_int(out):
    class IntDiv(torch.nn.Module):
        def forward(self, a: int, b: int) -> float:
            # aten::div.int has no upgrader: PyTorch keeps version 3 for this code.
            return a / b

    out.save(torch.jit.script(IntDiv()), "version_div_int")


def scenario_sparse(out):
    class Sparse(torch.nn.Module):
        def __init__(self):
            super().__init__()
            i = torch.tensor([[0, 1, 1], [2, 0, 2]])
            self.register_buffer("coo", torch.sparse_coo_tensor(i, torch.tensor([3., 4., 5.]), (2, 3)))
            self.register_buffer("coo_coalesced", self.coo.coalesce())
            self.register_buffer("csr", torch.tensor([[0., 1.], [2., 0.]]).to_sparse_csr())
            self.register_buffer("csr_int", torch.tensor([[0, 0, 7], [1, 0, 0]]).to_sparse_csr())
            self.weight = torch.nn.Parameter(
                torch.sparse_coo_tensor(torch.tensor([[0, 3]]), torch.tensor([1.5, -2.0]), (4,))
            )

        def forward(self, x: Tensor) -> Tensor:
            return x

    # save_jit_module_to_flatbuffer refuses sparse tensors ("Cannot access storage of
    # SparseTensorImpl"): there is no flatbuffer twin.
    out.save(torch.jit.script(Sparse()), "sparse")


def scenario_fbonly_dtype_views(out):
    class DtypeViews(torch.nn.Module):
        def __init__(self):
            super().__init__()
            c = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
            self.register_buffer("c", c)
            self.register_buffer("r", torch.view_as_real(c))
            f = torch.arange(4, dtype=torch.float32)
            self.register_buffer("f", f)
            self.register_buffer("i", f.view(torch.int32))
            self.register_buffer("b", f.view(torch.uint8)[2:10])

        def forward(self, x: Tensor) -> Tensor:
            return x

    # Flatbuffer only: torch.jit.save pickles the storage once with the first view's
    # dtype, and torch.jit.load of that zip then fails ("sizes 2 2, strides 2 1 ...
    # require a storage of at least 32 bytes, but storage only has 16 bytes").
    out.save_ptl(torch.jit.script(DtypeViews()), "fbonly_dtype_views", api="jit")


def scenario_setstate_buffers(out):
    class WithState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", torch.arange(4, dtype=torch.float32))
            self.bias = torch.nn.Parameter(torch.ones(2))
            self.k = 3

        @torch.jit.export
        def __getstate__(self) -> Tuple[Tensor, Tensor, int, bool]:
            return (self.weight, self.bias, self.k, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[Tensor, Tensor, int, bool]) -> None:
            # torch.jit.load runs this: the buffer and parameter PyTorch reports are the
            # tensors it assigns (the weight doubled).
            self.weight = state[0] * 2
            self.bias = state[1]
            self.k = state[2] + 1
            self.training = state[3]

        def forward(self, x):
            return x * self.weight[0] + self.k

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = WithState()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(self.inner(x))

    out.save(torch.jit.script(Outer()), "setstate_buffers")
    # A submodule's __setstate__ in bytecode.pkl: a flatbuffer made of it lists that
    # function among the methods, and the object refers to it.
    out.emit(
        "mobile_zip_setstate",
        torch.jit.script(Outer())._save_to_buffer_for_lite_interpreter(),
    )


# ---------------------------------------------------------------------------------------
# Saving in the ports shared with fb_scenarios.py (fb=True: TestSaveLoadFlatbuffer's
# writer). Here at the end: the corpus records the line numbers of everything above.
# ---------------------------------------------------------------------------------------

def script_module_to_buffer(out, script_module, name):
    """The flatbuffer test's helper, also writing <name>.ptl: BytesIO of
    _save_to_buffer_for_lite_interpreter(_use_flatbuffer=True), positioned at 0."""
    module_buffer = io.BytesIO(out.save_ptl(script_module, name, api="lite"))
    module_buffer.seek(0)
    return module_buffer


def _flatbuffer_export_import_copy(out, m, name):
    """getExportImportCopy with the flatbuffer writer (lite API) instead of the zip one."""
    data = out.save_ptl(m, name, api="lite")
    imported = torch.jit.load(io.BytesIO(data))
    data2 = out.save_ptl(imported, name + "_resaved", api="lite")
    return torch.jit.load(io.BytesIO(data2))


def _to_buffer(out, fb, m, name):
    """Save `m` to a BytesIO (at 0): fb_<name>.ptl with script_module_to_buffer when `fb`,
    else <name>.pt with torch.jit.save."""
    if fb:
        return script_module_to_buffer(out, m, "fb_" + name)
    b = io.BytesIO()
    torch.jit.save(m, b)
    b.seek(0)
    out.emit(name, b.getvalue())
    return b
