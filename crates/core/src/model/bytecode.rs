//! Mobile bytecode: the functions a mobile flatbuffer (or a mobile zip's `bytecode.pkl`)
//! carries for the lite interpreter.

use super::{IValue, QualifiedName};

macro_rules! opcodes {
    ($( $variant:ident = $num:literal, $name:literal; )*) => {
        /// Interpreter opcodes of PyTorch 2.15, numbered by their position in PyTorch's
        /// opcode list (the flatbuffer `Instruction.op`); `name()` is the `bytecode.pkl`
        /// spelling.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum OpCode {
            $(
                #[doc = concat!("`", $name, "` (number ", stringify!($num), ").")]
                $variant = $num,
            )*
        }

        impl OpCode {
            /// Every opcode, in number order.
            pub const ALL: &'static [OpCode] = &[ $( OpCode::$variant, )* ];

            /// The opcode's name as `bytecode.pkl` spells it (`OP`, `GET_ATTR`, `__IS__`).
            pub fn name(self) -> &'static str {
                match self { $( OpCode::$variant => $name, )* }
            }

            /// The opcode numbered `n` (flatbuffer `Instruction.op`), if any.
            pub fn from_number(n: i64) -> Option<Self> {
                match n { $( $num => Some(OpCode::$variant), )* _ => None }
            }

            /// The opcode with this `bytecode.pkl` name, if any.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $( $name => Some(OpCode::$variant), )* _ => None }
            }
        }
    };
}

opcodes! {
    Op = 0, "OP";
    OpN = 1, "OPN";
    Load = 2, "LOAD";
    Move = 3, "MOVE";
    StoreN = 4, "STOREN";
    Store = 5, "STORE";
    Drop = 6, "DROP";
    DropR = 7, "DROPR";
    LoadC = 8, "LOADC";
    Jf = 9, "JF";
    Jmp = 10, "JMP";
    Loop = 11, "LOOP";
    Ret = 12, "RET";
    Wait = 13, "WAIT";
    Call = 14, "CALL";
    Guard = 15, "GUARD";
    TypeCheck = 16, "TYPECHECK";
    FailGuard = 17, "FAIL_GUARD";
    ProfileOp = 18, "PROFILE_OP";
    TailCall = 19, "TAIL_CALL";
    InterfaceCall = 20, "INTERFACE_CALL";
    GetAttr = 21, "GET_ATTR";
    SetAttr = 22, "SET_ATTR";
    ListUnpack = 23, "LIST_UNPACK";
    TupleConstruct = 24, "TUPLE_CONSTRUCT";
    NamedTupleConstruct = 25, "NAMED_TUPLE_CONSTRUCT";
    ListConstruct = 26, "LIST_CONSTRUCT";
    DictConstruct = 27, "DICT_CONSTRUCT";
    CreateObject = 28, "CREATE_OBJECT";
    IsInstance = 29, "ISINSTANCE";
    TupleSlice = 30, "TUPLE_SLICE";
    TupleIndex = 31, "TUPLE_INDEX";
    RaiseException = 32, "RAISE_EXCEPTION";
    DictIndex = 33, "DICT_INDEX";
    UncheckedCast = 34, "UNCHECKED_CAST";
    Is = 35, "__IS__";
    UnInitialized = 36, "UN_INITIALIZED";
    IsNot = 37, "__ISNOT__";
    Format = 38, "FORMAT";
    Device = 39, "DEVICE";
    Dtype = 40, "DTYPE";
    Dim = 41, "DIM";
    Not = 42, "__NOT__";
    ToList = 43, "TO_LIST";
    NumToTensor = 44, "NUM_TO_TENSOR";
    IsCuda = 45, "IS_CUDA";
    Fork = 46, "FORK";
    Warn = 47, "WARN";
    Enter = 48, "ENTER";
    Exit = 49, "EXIT";
    Awaitable = 50, "AWAITABLE";
}

/// One instruction: opcode, `n` (count operand) and `x` (index or offset operand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The opcode.
    pub op: OpCode,
    /// The count operand (`N`): e.g. how many values an `OPN` or `LIST_CONSTRUCT` takes.
    pub n: u16,
    /// The index or offset operand (`X`): into the operator, constant or type table, or a
    /// jump distance.
    pub x: i32,
}

/// An operator a function calls (`aten::linear`, overload `""`), with the number of
/// arguments passed at the call site (`None` = not recorded, the runtime's default -1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The operator's name (`aten::linear`).
    pub name: String,
    /// The overload name, empty for the default overload.
    pub overload_name: String,
    /// How many arguments the call site passes, if recorded.
    pub num_args: Option<i32>,
}

impl Operator {
    /// `name` or `name.overload`, the key of PyTorch's `opname_to_num_args`.
    pub fn full_name(&self) -> String {
        if self.overload_name.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.overload_name)
        }
    }
}

/// A schema argument or return: name, type string and default value.
#[derive(Clone, Debug)]
pub struct Arg {
    /// The argument's name.
    pub name: String,
    /// The argument's type as a string (`Tensor`, `Optional[int]`).
    pub type_str: String,
    /// The default value, if the argument has one.
    pub default_value: Option<IValue>,
}

/// A bytecode function's schema: its arguments and returns.
#[derive(Clone, Debug, Default)]
pub struct FunctionSchema {
    /// The arguments in order, `self` first for methods.
    pub arguments: Vec<Arg>,
    /// The returns in order.
    pub returns: Vec<Arg>,
}

/// A bytecode function.
#[derive(Clone, Debug)]
pub struct BytecodeFunction {
    /// The function's qualified name (`__torch__.M.forward`).
    pub qualified_name: QualifiedName,
    /// The instructions, in execution order.
    pub instructions: Vec<Instruction>,
    /// The operator table that `OP` and `OPN` index.
    pub operators: Vec<Operator>,
    /// The constant table that `LOADC` indexes.
    pub constants: Vec<IValue>,
    /// The type table (type strings) that `LIST_CONSTRUCT`, `CREATE_OBJECT` and others
    /// index.
    pub type_annotations: Vec<String>,
    /// Number of registers the function uses (`register_size`).
    pub register_size: i32,
    /// The schema, when the file records one.
    pub schema: Option<FunctionSchema>,
    /// One debug handle per instruction (a process-wide counter in PyTorch).
    pub debug_handles: Vec<i64>,
    /// Index of `self`'s class among the module's object types.
    pub class_type: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_numbers_are_positions() {
        for (i, op) in OpCode::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(OpCode::from_number(i as i64), Some(*op));
            assert_eq!(OpCode::from_name(op.name()), Some(*op));
        }
        assert_eq!(OpCode::ALL.len(), 51);
        assert_eq!(OpCode::GetAttr.name(), "GET_ATTR");
    }
}

/// What PyTorch's `get_flatbuffer_module_info` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModuleInfo {
    /// The file's bytecode version (flatbuffer `Module.bytecode_version`).
    pub bytecode_version: u32,
    /// The file's operator version (flatbuffer `Module.operator_version`).
    pub operator_version: u32,
    /// Qualified names of every bytecode function.
    pub function_names: std::collections::BTreeSet<String>,
    /// Plain type names found in the functions' type annotations (`List`, `Tensor`,
    /// `NamedTuple`, ...).
    pub type_names: std::collections::BTreeSet<String>,
    /// Each operator's full name (`name.overload`) and its call's argument count, -1 when
    /// not recorded.
    pub opname_to_num_args: std::collections::BTreeMap<String, i32>,
}

impl ModuleInfo {
    /// Collects the info over `functions` (the functions among the mobile ivalues).
    pub fn new<'a>(
        bytecode_version: u32,
        operator_version: u32,
        functions: impl IntoIterator<Item = &'a BytecodeFunction>,
    ) -> Self {
        let mut info = ModuleInfo {
            bytecode_version,
            operator_version,
            ..Default::default()
        };
        for f in functions {
            info.function_names
                .insert(f.qualified_name.as_str().to_string());
            for op in &f.operators {
                info.opname_to_num_args
                    .insert(op.full_name(), op.num_args.unwrap_or(-1));
            }
            for t in &f.type_annotations {
                // PyTorch fails on an annotation it cannot parse; the reader has
                // already accepted these, so a failure here only drops names.
                let _ = collect_type_names(t, &mut info.type_names);
            }
        }
        info
    }
}

/// The names PyTorch's mobile `TypeParser` collects from a type annotation string
/// (`getContainedTypes`): every plain type name it parses (`List`, `Dict`, `Tensor`,
/// `int`, `Any`, ...), not the qualified `__torch__.*` names, and `NamedTuple` for a
/// named-tuple definition `__torch__.T[NamedTuple, [[field, type], ...]]` (whose field
/// types are parsed, field names not).
struct AnnotationParser<'a, 'n> {
    text: &'a str,
    pos: usize,
    depth: usize,
    names: &'n mut std::collections::BTreeSet<String>,
}

impl AnnotationParser<'_, '_> {
    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?}"))
        }
    }

    fn ident(&mut self) -> Result<&str, String> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err("expected a name".into());
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn parse_all(&mut self) -> Result<(), String> {
        self.parse()?;
        self.skip_ws();
        if self.pos != self.text.len() {
            return Err("unexpected text after the type".into());
        }
        Ok(())
    }

    fn parse(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("type nested too deeply".into());
        }
        if self.eat('(') {
            // `Tuple[()]`
            self.expect(')')?;
            self.depth -= 1;
            return Ok(());
        }
        let name = self.ident()?.to_string();
        if name.contains('.') {
            // A class (not collected); with `[`, a named-tuple definition.
            if self.eat('[') {
                let kind = self.ident()?;
                if kind != "NamedTuple" {
                    return Err(format!("{kind:?} definitions are not supported"));
                }
                self.names.insert("NamedTuple".into());
                self.expect(',')?;
                self.expect('[')?;
                if !self.eat(']') {
                    loop {
                        self.expect('[')?;
                        self.ident()?;
                        self.expect(',')?;
                        self.parse()?;
                        self.expect(']')?;
                        if self.eat(']') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                self.expect(']')?;
            }
        } else {
            self.names.insert(name);
            if self.eat('[') {
                loop {
                    self.parse()?;
                    if self.eat(']') {
                        break;
                    }
                    self.expect(',')?;
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }
}

/// Adds the type names PyTorch's `get_flatbuffer_module_info` reports for one
/// `type_annotations` string (see `AnnotationParser`).
pub fn collect_type_names(
    text: &str,
    names: &mut std::collections::BTreeSet<String>,
) -> Result<(), String> {
    let mut p = AnnotationParser {
        text,
        pos: 0,
        depth: 0,
        names,
    };
    p.parse_all()
        .map_err(|e| format!("{e} at column {}", p.pos))
}
