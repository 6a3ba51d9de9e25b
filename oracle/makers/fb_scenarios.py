"""Flatbuffer scenarios, run by oracle/makers/make_corpus.py with REAL PyTorch 2.15.0.

Same conventions as scenarios.py (one fresh process per `scenario_<name>`,
PYTHONHASHSEED=0, torch.manual_seed(0), this file executed as `__main__` under the relative
name `oracle/fb_scenarios.py`, so classes are `__torch__.<Name>`), but these scenarios only
write mobile flatbuffers:

  out.save_ptl(m, name, api="lite"|"jit", extra_files=None, to="buffer"|"path")
      api="lite": m._save_to_buffer_for_lite_interpreter(_use_flatbuffer=True)
                  (= `script_module_to_buffer` of the test file)
      api="jit":  torch.jit.save_jit_module_to_flatbuffer(m, BytesIO or pathlib.Path)
  out.note(msg)

Every `.ptl` is classified right away (make_corpus.Out.emit_ptl / write_ptl): corpus/<name>.ptl
+ <name>.ptl.json (oracle/peer/facts.py) when torch.jit.load gives the saved module back (same
modules, types, parameters, buffers as a zip save of the same module object), else
corpus/flatbuffer_bugs/<name>.ptl + .ptl.json (what PyTorch does with it).

`scenario_fb_<test>` ports `class TestSaveLoadFlatbuffer` of PyTorch's
test/jit/test_save_load.py (seed ../shared/seed/000_21ac96dc17ecb6bf.txt), keeping the module
definitions, the order of creation and the clear_class_registry() calls.  The tests that use
JitTestCase.getExportImportCopy (a *zip* round trip, even in the flatbuffer class) are ported
with a flatbuffer round trip: `fb_<test>.ptl` = the scripted module, `fb_<test>_resaved.ptl`
= that file loaded with torch.jit.load and saved again with the same writer.
`scenario_fbonly_<name>` are own flatbuffer-only scenarios.

The tests both classes have (different_modules, different_functions, different_interfaces,
many_collisions, save_load_params_buffers_submodules) are not written twice: their
scenarios here are the zip ports of scenarios.py run with fb=True (the same module
definitions, saved with this class's writer). make_corpus.py executes scenarios.py as
`__main__` first and this file in the same namespace (`scenarios` names that module).
"""
import functools
import io
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from scenarios import (  # the __main__ module: scenarios.py, executed before this file
    Final,
    _flatbuffer_export_import_copy,
    clear_class_registry,
    scenario_different_functions,
    scenario_different_interfaces,
    scenario_different_modules,
    scenario_many_collisions,
    scenario_params_buffers_submodules,
)


# ---------------------------------------------------------------------------------------
# TestSaveLoadFlatbuffer ports
# ---------------------------------------------------------------------------------------

# The tests TestSaveLoad has too: scenarios.py's port with fb=True (see the docstring).
scenario_fb_different_modules = functools.partial(scenario_different_modules, fb=True)
scenario_fb_different_functions = functools.partial(scenario_different_functions, fb=True)
scenario_fb_different_interfaces = functools.partial(scenario_different_interfaces, fb=True)
scenario_fb_many_collisions = functools.partial(scenario_many_collisions, fb=True)
scenario_fb_save_load_params_buffers_submodules = functools.partial(
    scenario_params_buffers_submodules, fb=True)


def scenario_fb_save_load_using_pathlib(out):
    class MyMod(torch.jit.ScriptModule):
        @torch.jit.script_method
        def forward(self, a):
            return 2 * a

    m = MyMod()

    # Save then load (the test uses a temporary file name; the corpus path instead).
    out.save_ptl(m, "fb_save_load_using_pathlib", api="jit", to="path")
    path = Path(out.ptl_path("fb_save_load_using_pathlib"))
    m2 = torch.jit.load(path)

    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(m(x), m2(x))


def scenario_fb_save_namedtuple_input_only(out):
    global FooTuple  # see [local resolution in python]

    class FooTuple(NamedTuple):
        a: int

    class MyModule(torch.nn.Module):
        def forward(self, x: FooTuple) -> torch.Tensor:
            return torch.tensor(3)

    m_loaded = _flatbuffer_export_import_copy(out, torch.jit.script(MyModule()),
                                              "fb_save_namedtuple_input_only")
    output = m_loaded(FooTuple(a=5))
    assert torch.equal(output, torch.tensor(3))


def scenario_fb_save_namedtuple_output_only(out):
    global FooTuple  # see [local resolution in python]

    class FooTuple(NamedTuple):
        a: int

    class MyModule(torch.nn.Module):
        def forward(self) -> Optional[FooTuple]:
            return None

    m_loaded = _flatbuffer_export_import_copy(out, torch.jit.script(MyModule()),
                                              "fb_save_namedtuple_output_only")
    output = m_loaded()
    assert output is None


def scenario_fb_module_info_flatbuffer(out):
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
    first_saved_module = io.BytesIO(
        out.save_ptl(first_script_module, "fb_module_info_flatbuffer", api="jit"))
    first_saved_module.seek(0)
    ff_info = torch.jit._serialization.get_flatbuffer_module_info(first_saved_module)
    assert ff_info["bytecode_version"] == 9
    assert ff_info["operator_version"] == 1
    assert ff_info["type_names"] == set()
    assert ff_info["opname_to_num_args"] == {"aten::linear": 3}

    assert len(ff_info["function_names"]) == 1
    assert next(iter(ff_info["function_names"])).endswith("forward")


def scenario_fb_save_load_with_extra_files(out):
    class Module(torch.nn.Module):
        def forward(self, x: Tensor):
            return x

    module = Module()
    script_module = torch.jit.script(module)

    extra_files = {"abc.json": b"[1,2,3]"}
    script_module_io = out.save_ptl(script_module, "fb_save_load_with_extra_files",
                                    api="lite", extra_files=extra_files)

    re_extra_files = {}
    torch._C._get_model_extra_files_from_buffer(script_module_io, re_extra_files)

    assert extra_files == re_extra_files


# ---------------------------------------------------------------------------------------
# Own flatbuffer-only scenarios
# ---------------------------------------------------------------------------------------

class NoEnumPoint(NamedTuple):
    x: int
    y: float


@torch.jit.script
class NoEnumInner:
    def __init__(self, a: int, s: str):
        self.a = a
        self.s = s
        self.t = torch.ones(2)
        self.items: List[int] = [a, a + 1]

    def total(self) -> int:
        return self.a + len(self.items)


class AttributesNoEnum(torch.nn.Module):
    """scenarios.Attributes without the Enum attribute and the Enum constant (an EnumValue
    makes both flatbuffer loaders fail, see corpus/flatbuffer_bugs/attributes.ptl.json)."""
    K_INT: Final[int]
    K_F2: Final[float]
    K_STR: Final[str]
    K_TUPLE: Final[Tuple[int, float, str]]

    opt_none: Optional[int]
    opt_some: Optional[str]
    point: NoEnumPoint
    empty_list: List[int]
    empty_dict: Dict[str, Tensor]

    def __init__(self):
        super().__init__()
        self.K_INT = 7
        self.K_F2 = 2.0
        self.K_STR = 'const "q"\n\u00e9'
        self.K_TUPLE = (1, 0.5, "t")

        self.i = 42
        self.neg_i = -1
        self.big_i = 2 ** 40
        self.min_i = -(2 ** 63)
        self.f = 1.5
        self.f_nan = float("nan")
        self.f_inf = float("inf")
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
        self.inner = NoEnumInner(5, "inner")
        self.point = NoEnumPoint(3, 4.5)
        self.t = torch.arange(3)

    def forward(self, x: Tensor) -> Tensor:
        if self.opt_some is not None:
            x = x + len(self.opt_some)
        return x + self.K_INT + self.K_F2 + self.inner.total() + self.point.x


def scenario_fbonly_attributes_no_enum(out):
    out.save_ptl(torch.jit.script(AttributesNoEnum()), "fbonly_attributes_no_enum", api="jit")
