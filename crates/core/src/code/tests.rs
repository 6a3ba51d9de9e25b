use std::path::Path;

use super::*;
use crate::model::{ClassKind, Definition, TypeExpr};

// ---------------------------------------------------------------------------------------
// Example texts from spec/code.md and spec/mangling.md (all PyTorch output).

const LINEAR: &str = r#"class Linear(Module):
  __parameters__ = ["weight", "bias", ]
  __buffers__ = []
  weight : Tensor
  bias : Tensor
  training : bool
  _is_full_backward_hook : NoneType
  in_features : Final[int] = 2
  out_features : Final[int] = 2
  def forward(self: __torch__.torch.nn.modules.linear.Linear,
    input: Tensor) -> Tensor:
    weight = self.weight
    bias = self.bias
    return torch.linear(input, weight, bias)
"#;

/// code.md §3.2 shows this method alone; wrapped in its class here.
const LEAF_OTHER: &str = r#"class Leaf(Module):
  __parameters__ = ["w", ]
  __buffers__ = []
  def other(self: __torch__.pkgx.mods.Leaf,
    a: int,
    b: Optional[str]=None) -> List[int]:
    c = self.c
    return [a, (c).bump(1, )]
"#;

const HELPER: &str = r#"def helper(x: Tensor,
    k: int=2) -> Tensor:
  return torch.mul(x, k)
"#;

const COUNTER: &str = r#"class Counter:
  n : int
  hist : List[int]
  def __init__(self: __torch__.pkgx.mods.Counter,
    start: int) -> NoneType:
    self.n = start
    self.hist = annotate(List[int], [])
    return None
"#;

const POINT: &str = "class Point(NamedTuple):\n  x : int\n  y : float\n";

const MODE: &str = "class Mode(Enum):\n  A = \"a\"\n  B = \"b\"\n";

const IFACE: &str = r#"class Iface(ModuleInterface):
  def forward(self, x: Tensor) -> Tensor:
    pass
  def other(self, a: int, b: Optional[str]) -> List[int]:
    pass
"#;

/// mangling.md §3, `buf1`.
const FOO_BUF1: &str = r#"class Foo(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  foo : __torch__.torch.nn.modules.linear.Linear
  bar : __torch__.torch.nn.modules.linear.Linear
  def forward(self: __torch__.Foo,
    x: Tensor) -> Tensor:
    foo = self.foo
    x0 = (foo).forward(x, )
    bar = self.bar
    return (bar).forward(x0, )
"#;

/// mangling.md §3, `code/__torch__.py` of ContainsBoth.
const CONTAINS_BOTH: &str = r#"class ContainsBoth(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  second : __torch__.Foo
  first : __torch__.___torch_mangle_0.Foo
  def forward(self: __torch__.ContainsBoth,
    x: Tensor) -> Tensor:
    first = self.first
    x0 = (first).forward(x, )
    second = self.second
    return (second).forward(x0, )
class Foo(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  foo : __torch__.torch.nn.modules.linear.Linear
  def forward(self: __torch__.Foo,
    x: Tensor) -> Tensor:
    foo = self.foo
    return (foo).forward(x, )
"#;

const MANGLED_FOO: &str = r#"class Foo(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  foo : __torch__.torch.nn.modules.linear.___torch_mangle_1.Linear
  bar : __torch__.torch.nn.modules.linear.___torch_mangle_1.Linear
  def forward(self: __torch__.___torch_mangle_0.Foo,
    x: Tensor) -> Tensor:
    foo = self.foo
    x0 = (foo).forward(x, )
    bar = self.bar
    return (bar).forward(x0, )
"#;

const MANGLED_LINEAR: &str = r#"class Linear(Module):
  __parameters__ = ["weight", "bias", ]
  __buffers__ = []
  weight : Tensor
  bias : Tensor
  training : bool
  _is_full_backward_hook : NoneType
  out_features : Final[int] = 2
  in_features : Final[int] = 2
  def forward(self: __torch__.torch.nn.modules.linear.___torch_mangle_1.Linear,
    input: Tensor) -> Tensor:
    weight = self.weight
    bias = self.bias
    return torch.linear(input, weight, bias)
"#;

/// mangling.md §4 (the excerpt's elided parts left out).
const NAMEDTUPLE_COLLISION: &str = r#"class Foo(Module):
  __parameters__ = []
  __buffers__ = []
  def forward(self: __torch__.Foo,
    x: Tensor) -> Tuple[Tensor, __torch__.___torch_mangle_1.MyCoolNamedTuple]:
    _0 = __torch__.___torch_mangle_1.MyCoolNamedTuple("hello",)
    return (x, _0)
class MyCoolNamedTuple(NamedTuple):
  a : int
"#;

const MY_INTERFACE: &str =
    "class MyInterface(Interface):\n  def bar(self, x: Tensor) -> Tensor:\n    pass\n";

/// Constants, hooks and odd attribute names as observed in the corpus (code.md §3.1, §3.4).
const ATTRIBUTES: &str = r#"class Hooked(Module):
  __parameters__ = []
  __buffers__ = []
  __forward_pre_hooks__ = ["pre_hook", ]
  __forward_hooks__ = ["post_hook", ]
  training : bool
  __annotations__["0"] = __torch__.torch.nn.modules.linear.Linear
  dev : Device
  tup : Tuple[int, str, float, bool]
  e : Tuple[()]
  K_TUPLE : Final[Tuple[int, float, str]] = (1, 0.5, "t")
  K_STR_ASCII : Final[str] = "say \"hi\"\n\t\\ \'x\' \001"
  K_STR : Final[str] = CONSTANTS.c0
  K_NONE : Final[NoneType] = None
  K_NEG : Final[int] = -5
  K_F01 : Final[float] = 0.10000000000000001
  K_F2 : Final[float] = 2.
  K_BIG : Final[float] = 10000000000000000
  def forward(self: __torch__.Hooked) -> NoneType:
    return None
  def pre_hook(self: __torch__.Hooked,
    input: Tuple[Tensor]) -> Tuple[Tensor]:
    return (torch.mul((input)[0], 2),)
def lol(x: Tensor) -> str:
  return "hello"
def f() -> int:
  return 1
"#;

const EXAMPLES: &[&str] = &[
    LINEAR,
    LEAF_OTHER,
    HELPER,
    COUNTER,
    POINT,
    MODE,
    IFACE,
    FOO_BUF1,
    CONTAINS_BOTH,
    MANGLED_FOO,
    MANGLED_LINEAR,
    NAMEDTUPLE_COLLISION,
    MY_INTERFACE,
    ATTRIBUTES,
];

fn reprint(qualifier: &str, text: &str) -> Result<String, CodeError> {
    let defs = parse_source(qualifier, text)?;
    let refs: Vec<&Definition> = defs.iter().collect();
    Ok(print_source(&refs))
}

/// Whatever parses, prints to text that parses back to the same declarations, and the
/// printer is a fixed point from then on.
fn assert_stable(qualifier: &str, text: &str) {
    let Ok(defs) = parse_source(qualifier, text) else {
        return;
    };
    let refs: Vec<&Definition> = defs.iter().collect();
    let printed = print_source(&refs);
    let again = parse_source(qualifier, &printed)
        .unwrap_or_else(|e| panic!("reprint of {text:?} does not parse: {e}\n{printed}"));
    assert_eq!(again, defs, "input {text:?}\nprinted {printed:?}");
    let refs: Vec<&Definition> = again.iter().collect();
    assert_eq!(print_source(&refs), printed);
}

#[test]
fn spec_examples_reprint_identically() {
    for text in EXAMPLES {
        let out = reprint("__torch__.pkgx.mods", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(out, *text);
        assert_stable("__torch__", text);
    }
}

/// Every fenced example in the spec files that is a complete declaration text (the other
/// blocks are grammar, record lists or excerpts with `...`), from the repository's copy
/// of the spec.
#[test]
fn spec_file_blocks_reprint_identically() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec");
    let mut checked = 0;
    for file in ["code.md", "mangling.md"] {
        let md = std::fs::read_to_string(spec.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", spec.join(file).display()));
        for block in md.split("```").skip(1).step_by(2) {
            let block = block.strip_prefix('\n').unwrap_or(block);
            if block.contains("...") || block.contains('…') {
                continue;
            }
            let text = if block.starts_with("  def ") {
                format!("class Wrapper:\n{block}")
            } else if block.starts_with("class ") || block.starts_with("def ") {
                block.to_string()
            } else {
                continue;
            };
            let out = reprint("__torch__", &text).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
            assert_eq!(out, text, "{file}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} spec blocks found");
}

#[test]
fn declarations_are_parsed_into_the_model() {
    let defs = parse_source("__torch__.torch.nn.modules.linear", LINEAR).unwrap();
    let Definition::Class(c) = &defs[0] else {
        panic!("{defs:?}")
    };
    assert_eq!(c.name.as_str(), "__torch__.torch.nn.modules.linear.Linear");
    assert_eq!(c.kind, ClassKind::Module);
    assert_eq!(c.parameters, ["weight", "bias"]);
    assert!(c.buffers.is_empty() && c.forward_hooks.is_none());
    let attrs: Vec<&str> = c.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        attrs,
        ["weight", "bias", "training", "_is_full_backward_hook"]
    );
    assert_eq!(c.constants[1].name, "out_features");
    assert_eq!(c.constants[1].ty, TypeExpr::name("int"));
    assert_eq!(c.constants[1].literal, "2");
    let m = &c.methods[0];
    assert_eq!(m.name, "forward");
    assert_eq!(m.signature.params[0].name, "self");
    assert_eq!(
        m.signature.params[0].ty.as_ref().unwrap().to_string(),
        "__torch__.torch.nn.modules.linear.Linear"
    );
    assert_eq!(m.signature.returns, Some(TypeExpr::name("Tensor")));
    assert_eq!(
        m.body,
        "    weight = self.weight\n    bias = self.bias\n    return torch.linear(input, weight, bias)\n"
    );

    let defs = parse_source("__torch__", ATTRIBUTES).unwrap();
    let Definition::Class(c) = &defs[0] else {
        panic!()
    };
    assert_eq!(
        c.forward_pre_hooks.as_deref(),
        Some(&["pre_hook".to_string()][..])
    );
    assert_eq!(c.attributes[1].name, "0");
    assert_eq!(
        c.attributes[3].ty.to_string(),
        "Tuple[int, str, float, bool]"
    );
    assert_eq!(c.attributes[4].ty, TypeExpr::EmptyTuple);
    let k: Vec<(&str, &str)> = c
        .constants
        .iter()
        .map(|k| (k.name.as_str(), k.literal.as_str()))
        .collect();
    assert_eq!(k[0], ("K_TUPLE", "(1, 0.5, \"t\")"));
    assert_eq!(k[2], ("K_STR", "CONSTANTS.c0"));
    assert_eq!(
        parse_literal(&c.constants[1].literal).unwrap(),
        Literal::Str("say \"hi\"\n\t\\ 'x' \u{1}".into())
    );
    // The 1e16 trap: an int literal for a Final[float].
    assert_eq!(parse_literal(k[7].1).unwrap().as_f64(), Some(1e16));
    assert_eq!(c.methods[0].signature.params.len(), 1);
    let Definition::Function(f) = &defs[2] else {
        panic!()
    };
    assert_eq!(f.name.as_str(), "__torch__.f");
    assert!(f.def.signature.params.is_empty());

    let defs = parse_source("__torch__.pkgx.mods", LEAF_OTHER).unwrap();
    let Definition::Class(c) = &defs[0] else {
        panic!()
    };
    let b = &c.methods[0].signature.params[2];
    assert_eq!((b.name.as_str(), b.default.as_deref()), ("b", Some("None")));
    assert_eq!(b.ty.as_ref().unwrap().to_string(), "Optional[str]");

    let defs = parse_source("__torch__.pkgx.mods", IFACE).unwrap();
    let Definition::Interface(i) = &defs[0] else {
        panic!()
    };
    assert!(i.is_module_interface);
    assert_eq!(i.name.as_str(), "__torch__.pkgx.mods.Iface");
    assert_eq!(i.methods[1].0, "other");
    assert_eq!(i.methods[1].1.params[0].ty, None);
    assert_eq!(i.methods[1].1.params.len(), 3);

    let defs = parse_source("__torch__", &format!("{POINT}{MODE}{COUNTER}")).unwrap();
    match &defs[..] {
        [
            Definition::NamedTuple(p),
            Definition::Enum(e),
            Definition::Class(c),
        ] => {
            assert_eq!(p.fields[1], ("y".to_string(), TypeExpr::name("float")));
            assert_eq!(e.members[0], ("A".to_string(), "\"a\"".to_string()));
            assert_eq!(c.kind, ClassKind::Class);
            assert_eq!(c.attributes.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tolerated_variants() {
    // Blank and comment lines are skipped; defaults with brackets, commas and strings;
    // a trailing comma; one-line signatures; an int literal for a Final[float].
    let text = "# c\n\nclass A:\n\n  x : Final[float] = 1\n  def f(self: A, a: List[int]=[1, 2], s: str=\"a, ) = [\", ) -> int:\n    return 1\n\n  y : int\ndef g(x):\n  pass\n";
    let defs = parse_source("__torch__", text).unwrap();
    let Definition::Class(c) = &defs[0] else {
        panic!()
    };
    let p = &c.methods[0].signature.params;
    assert_eq!(p.len(), 3);
    assert_eq!(p[1].default.as_deref(), Some("[1, 2]"));
    assert_eq!(p[2].default.as_deref(), Some("\"a, ) = [\""));
    // The blank line after the body belongs to the body (kept verbatim).
    assert_eq!(c.methods[0].body, "    return 1\n\n");
    assert_eq!(c.attributes[0].name, "y");
    assert_stable("__torch__", text);
    // A file without its final newline.
    let defs = parse_source("__torch__", "def f() -> int:\n  return 1").unwrap();
    assert_eq!(defs[0].methods()[0].body, "  return 1");
}

fn error_line(text: &str) -> usize {
    match parse_source("__torch__", text) {
        Err(e) => {
            assert!(e.message.len() < 400, "message too long: {}", e.message);
            e.line
        }
        Ok(d) => panic!("{text:?} parsed: {d:?}"),
    }
}

#[test]
fn errors_carry_line_numbers() {
    let big = "[".repeat(100_000);
    let cases: Vec<(String, usize)> = vec![
        ("class A(Module):\n  x : List[int\n".into(), 2),
        ("class A(Module):\n  x : List[int]]\n".into(), 2),
        ("def f(x: int -> int:\n  return x\n".into(), 1),
        ("def f(x: int]) -> int:\n  return x\n".into(), 1),
        ("def f(x: int) -> int\n  return x\n".into(), 1),
        ("def f(x: int) -> int:\n".into(), 1),
        ("def f(x: \"abc) -> int:\n  return x\n".into(), 1),
        (
            "class A:\n  def f(self: A,\n    x: List[int]]) -> int:\n    return 1\n".into(),
            3,
        ),
        (
            "class A:\n  def f(self: A,\n    x: Lis t) -> int:\n    return 1\n".into(),
            3,
        ),
        (
            "class A:\n  def f(self: A,\n    x: int) -> Lis t:\n    return 1\n".into(),
            3,
        ),
        (
            "class A:\n  def f(self: A,\n    , x: int) -> int:\n    return 1\n".into(),
            3,
        ),
        (
            "class A:\n  def f(self: A,\nx: int) -> int:\n    return 1\n".into(),
            2,
        ),
        ("hello world\n".into(), 1),
        ("class A:\n  x : int\n   y : int\n".into(), 3),
        ("class A:\n  x : int\n\ty : int\n".into(), 3),
        ("class A(Module):\n  x : int = 3\n".into(), 2),
        ("class A(Module):\n  x = 3\n".into(), 2),
        (
            "class A(Module):\n  __parameters__ = [\"a\" \"b\"]\n".into(),
            2,
        ),
        (
            "class A(Module):\n  __parameters__ = []\n  __parameters__ = []\n".into(),
            3,
        ),
        ("class A:\n  __parameters__ = []\n".into(), 2),
        ("class A(Enum):\n  A = = 1\n".into(), 2),
        ("class A(Enum):\n  A : int\n".into(), 2),
        (
            "class A(NamedTuple):\n  def f(self) -> int:\n    pass\n".into(),
            2,
        ),
        // Found by the code_parse fuzzer: `def: T` read as a field printed back as a
        // method header.
        ("class A(NamedTuple):\n  def: int\n".into(), 2),
        ("class A(Interface):\n  x : int\n".into(), 2),
        ("class A(Foo):\n".into(), 1),
        ("class A(Module)\n".into(), 1),
        ("class 1A:\n".into(), 1),
        ("x = 1\nclass A:\n".into(), 1),
        ("  def f() -> int:\n    return 1\n".into(), 1),
        ("class A:\n  __annotations__[\"0\" = int\n".into(), 2),
        ("class A:\n  __annotations__[\"\\q\"] = int\n".into(), 2),
        ("class A:\n  k : Final[str] = \"\\777\"\n".into(), 2),
        ("class A:\n  k : Final[str] = \"\\377\"\n".into(), 2),
        ("class E(Enum):\n  A = 99999999999999999999\n".into(), 2),
        (format!("class A:\n  x : {big}\n"), 2),
        (
            format!("class A:\n  k : Final[int] = {}\n", "(".repeat(100_000)),
            2,
        ),
        (
            format!("class E(Enum):\n  A = {}\n", "(".repeat(100_000)),
            2,
        ),
        (format!("class A(Module):\n  __buffers__ = {big}\n"), 2),
        (format!("\n\ndef f(x: {big}\n  return x\n"), 3),
        (format!("def f(x: int) -> {big}:\n  return x\n"), 1),
        (
            format!("class A:\n  def f(self: {big}) -> int:\n    pass\n"),
            2,
        ),
    ];
    for (text, line) in cases {
        let shown: String = text.chars().take(80).collect();
        assert_eq!(error_line(&text), line, "{shown:?}");
    }
    // Deep but balanced brackets in a body are opaque text.
    let body = format!("def f() -> int:\n  return {big}{}\n", "]".repeat(100_000));
    assert!(parse_source("__torch__", &body).is_ok());
}

/// A small deterministic PRNG (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "class ",
    "def ",
    "(",
    ")",
    "[",
    "]",
    ":",
    " : ",
    "=",
    " = ",
    ",",
    ", ",
    "\"",
    "'",
    "\\",
    "\n",
    "\n",
    "\n  ",
    "\n    ",
    "  ",
    "    ",
    "Module",
    "Enum",
    "NamedTuple",
    "Interface",
    "ModuleInterface",
    "x",
    "self",
    "int",
    "List",
    "Final",
    "Tuple",
    "__parameters__",
    "__annotations__",
    "__forward_hooks__",
    "->",
    " -> ",
    "1",
    "2.",
    "-",
    "pass",
    "#",
    "\t",
    "é",
    "\r",
    "None",
    "\"a\"",
    "()",
    "*",
    "e+5",
];

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(1);
    for _ in 0..4000 {
        let mut t = String::new();
        for _ in 0..rng.below(60) {
            t.push_str(TOKENS[rng.below(TOKENS.len())]);
        }
        assert_stable("__torch__", &t);
        let _ = parse_literal(&t);
    }
    // Raw characters too.
    for _ in 0..2000 {
        let t: String = (0..rng.below(80))
            .map(|_| char::from_u32(rng.below(0x300) as u32).unwrap_or('x'))
            .collect();
        assert_stable("__torch__", &t);
        let _ = parse_literal(&t);
    }
}

/// Random edits of valid files: deeper paths than pure garbage reaches. (The same over
/// every corpus code file is `tests/formats/code_reprint.rs`.)
#[test]
fn mutated_files_never_panic() {
    let sources: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
    let mut rng = Rng(2);
    for round in 0..6000 {
        let mut t = sources[round % sources.len()].clone();
        for _ in 0..1 + rng.below(3) {
            let mut at = rng.below(t.len() + 1);
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            match rng.below(3) {
                0 => t.insert_str(at, TOKENS[rng.below(TOKENS.len())]),
                1 => {
                    let mut end = (at + 1 + rng.below(8)).min(t.len());
                    while !t.is_char_boundary(end) {
                        end += 1;
                    }
                    t.replace_range(at..end, "");
                }
                _ => {
                    let mut end = (at + rng.below(30)).min(t.len());
                    while !t.is_char_boundary(end) {
                        end += 1;
                    }
                    let dup = t[at..end].to_string();
                    t.insert_str(at, &dup);
                }
            }
        }
        assert_stable("__torch__.m", &t);
    }
}

/// Each hostile shape parsed at n and 8n characters (best of three): linear work costs
/// about 8x, the quadratic scans this guards against 64x. A ratio, not a time limit, so
/// a slow machine does not fail it.
#[test]
fn huge_inputs_take_linear_time() {
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 9] = [
        ("nested brackets", |n| {
            format!("class A:\n  x : {}\n", "[".repeat(n))
        }),
        ("long parameter list", |n| {
            format!("def f({}) -> int:\n  pass\n", "x: int, ".repeat(n / 8))
        }),
        ("parameters on many lines", |n| {
            format!(
                "def f(x: int,\n{}) -> int:\n  pass\n",
                "    y: int,\n".repeat(n / 12)
            )
        }),
        ("long buffer list", |n| {
            format!(
                "class A(Module):\n  __buffers__ = [{}]\n",
                "\"b\", ".repeat(n / 5)
            )
        }),
        ("many attributes", |n| {
            format!("class A:\n{}", "  x : int\n".repeat(n / 10))
        }),
        ("open parentheses", |n| {
            format!("def f() -> int:\n{}", "  (\n".repeat(n / 4))
        }),
        ("unclosed defs", |n| "def f(\n".repeat(n / 7)),
        ("nested tuples", |n| {
            format!("class E(Enum):\n  A = {}\n", "(1, ".repeat(n / 4))
        }),
        ("escapes", |n| {
            format!("class E(Enum):\n  A = \"{}\"\n", "\\001".repeat(n / 4))
        }),
    ];
    let best = |text: &str| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                let _ = std::hint::black_box(parse_source("__torch__", text));
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    for (what, make) in shapes {
        let (small, large) = (make(250_000), make(2_000_000));
        let (ts, tl) = (best(&small), best(&large));
        assert!(
            tl <= ts * 24 + std::time::Duration::from_millis(50),
            "{what}: 2M characters took {tl:?}, 250k took {ts:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Literals.

#[test]
fn floats_print_like_pytorch() {
    for (v, s) in [
        (2.0, "2."),
        (100.0, "100."),
        (-0.0, "-0."),
        (0.0, "0."),
        (-5.0, "-5."),
        (9999999999.0, "9999999999."),
        (0.5, "0.5"),
        (0.25, "0.25"),
        (0.1, "0.10000000000000001"),
        (1e-20, "9.9999999999999995e-21"),
        (1e100, "1e+100"),
        (123456789.125, "123456789.125"),
        (1e10, "10000000000"),
        (1e16, "10000000000000000"),
        (1e17, "1e+17"),
        (-1e17, "-1e+17"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
        (1e-5, "1.0000000000000001e-05"),
        (-2.5e-7, "-2.4999999999999999e-07"),
    ] {
        assert_eq!(format_float(v), s, "{v:e}");
    }
    // `%.17g` as computed by CPython (same algorithm as glibc: exact, ties to even).
    for (bits, s) in [
        (0x43118b54f22aeb01u64, "1234567890123456.2"),
        (0x4376345785d89fff, "99999999999999984"),
        (0x4206fee0e1ac0000, "12345678901.5"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3f202e4b6ce5dc68, "0.00012344999999999999"),
        (0x3f1a36d1bd105b06, "9.9999000000000003e-05"),
        (0x0000000000000001, "4.9406564584124654e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0x0010000000000000, "2.2250738585072014e-308"),
        (0x3fd5555555555555, "0.33333333333333331"),
        (0x430c6bf526340004, "1000000000000000.5"),
        (0xf2a74de452e6b438, "-1.989032661366619e+244"),
        (0x6513270e269e0d37, "7.761117632285041e+178"),
        (0x36f675cc81e74ef5, "6.2946752411953861e-44"),
        (0x3d9c172411e20b8f, "6.3870161585135632e-12"),
        (0x6b4cb2424a23d596, "7.370437700706684e+208"),
        (0xc12753ff0c352f28, "-764415.52384326328"),
        (0x40f7500ee717bb10, "95488.931419115746"),
        (0xc12ae13b51f45f35, "-880797.66006753466"),
    ] {
        assert_eq!(format_float(f64::from_bits(bits)), s);
    }
}

#[test]
fn float_literals_round_trip() {
    let mut rng = Rng(3);
    for i in 0..20_000 {
        let v = match i % 3 {
            0 => f64::from_bits(rng.next()),
            1 => (rng.next() % 2_000_000_000_000) as f64 * if i % 2 == 0 { 1.0 } else { -1.0 },
            _ => (rng.next() as f64) / (rng.next() as f64 + 1.0),
        };
        let s = format_float(v);
        let back = parse_literal(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let back = back.as_f64().unwrap();
        assert!(
            back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()),
            "{v:e} -> {s} -> {back:e}"
        );
    }
}

#[test]
fn literals_parse_and_print() {
    use Literal::*;
    for (text, lit) in [
        ("None", None),
        ("True", Bool(true)),
        ("False", Bool(false)),
        ("-5", Int(-5)),
        ("7", Int(7)),
        ("-9223372036854775808", Int(i64::MIN)),
        ("2.", Float(2.0)),
        ("0.5", Float(0.5)),
        ("1e+100", Float(1e100)),
        ("-inf", Float(f64::NEG_INFINITY)),
        ("\"a\"", Str("a".into())),
        ("()", Tuple(vec![])),
        ("(1,)", Tuple(vec![Int(1)])),
        (
            "(1, 0.5, \"t\")",
            Tuple(vec![Int(1), Float(0.5), Str("t".into())]),
        ),
        (
            "((), (None, (True,)))",
            Tuple(vec![
                Tuple(vec![]),
                Tuple(vec![None, Tuple(vec![Bool(true)])]),
            ]),
        ),
    ] {
        assert_eq!(parse_literal(text).unwrap(), lit, "{text}");
        assert_eq!(format_literal(&lit), text);
    }
    assert!(matches!(parse_literal("nan").unwrap(), Float(f) if f.is_nan()));
    // Accepted but not PyTorch's spelling.
    assert_eq!(
        parse_literal(" (1, 2,) ").unwrap(),
        Tuple(vec![Int(1), Int(2)])
    );
    assert_eq!(parse_literal("(3)").unwrap(), Int(3));
    assert_eq!(parse_literal("'x'").unwrap(), Str("x".into()));
    assert_eq!(parse_literal("\"\\303\\251\"").unwrap(), Str("é".into()));
    assert_eq!(parse_literal("\"\\x41\"").unwrap(), Str("A".into()));
    for bad in [
        "",
        "(",
        "(1 2)",
        "1 2",
        "9223372036854775808",
        "1e",
        "1x",
        "Nonesuch",
        "[1]",
        "\"abc",
        "\"\\q\"",
        "\"\\xZ1\"",
        "-",
        ".",
        "(,)",
        "infinity",
    ] {
        let e = parse_literal(bad).unwrap_err();
        assert_eq!(e.line, 1, "{bad}");
    }
    let deep = "(".repeat(MAX_LITERAL_DEPTH + 1) + &")".repeat(MAX_LITERAL_DEPTH + 1);
    assert!(parse_literal(&deep).is_err());
    let ok = "(".repeat(MAX_LITERAL_DEPTH) + &")".repeat(MAX_LITERAL_DEPTH);
    assert!(parse_literal(&ok).is_ok());
}

#[test]
fn string_literals_round_trip() {
    assert_eq!(
        format_str_literal("say \"hi\"\n\t\\ 'x' \u{1}"),
        r#""say \"hi\"\n\t\\ \'x\' \001""#
    );
    assert_eq!(format_str_literal("é\0\x7f"), r#""\303\251\000\177""#);
    assert!(str_prints_inline("a\u{1}") && !str_prints_inline("é"));
    let mut rng = Rng(4);
    for _ in 0..3000 {
        let s: String = (0..rng.below(20))
            .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'))
            .collect();
        let q = format_str_literal(&s);
        assert_eq!(parse_string_literal(&q).as_deref(), Some(s.as_str()));
        assert_eq!(parse_literal(&q).unwrap(), Literal::Str(s));
    }
    assert_eq!(parse_string_literal("\"a\"b"), None);
}

#[test]
fn printer_layout() {
    // Non-identifier attribute names use `__annotations__` (created first when the first
    // attribute needs it, as PyTorch prints a frozen ModuleList); an empty module has `[]`s.
    let mut c = crate::model::ClassDef::new("__torch__.a.S".into(), ClassKind::Module);
    c.attributes.push(crate::model::AttributeDecl {
        name: "0".into(),
        ty: TypeExpr::name("Tensor"),
    });
    c.attributes.push(crate::model::AttributeDecl {
        name: "a b".into(),
        ty: TypeExpr::list(TypeExpr::name("int")),
    });
    c.forward_hooks = Some(vec![]);
    let d = Definition::Class(c);
    assert_eq!(
        print_source(&[&d]),
        "class S(Module):\n  __parameters__ = []\n  __buffers__ = []\n  __forward_hooks__ = []\n  __annotations__ = []\n  __annotations__[\"0\"] = Tensor\n  __annotations__[\"a b\"] = List[int]\n"
    );
    assert_stable("__torch__.a", &print_source(&[&d]));
}

// ---------------------------------------------------------------------------------------
// Real PyTorch output.
