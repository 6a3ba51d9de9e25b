//! IValues: every value an archive can hold.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::{Device, QualifiedName, Tensor, TypeExpr};

/// A TorchScript string. TorchScript strings are byte strings (normally UTF-8); they may
/// exceed 4 GiB and then borrow from the archive's mapping rather than being copied.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Str(pub Bytes);

impl Str {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text, or `None` if it is not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The text, with invalid UTF-8 replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(Bytes::from(s.into_bytes()))
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 256 {
            write!(f, "Str({} bytes)", self.0.len())
        } else {
            write!(f, "{:?}", String::from_utf8_lossy(&self.0))
        }
    }
}

/// A value. Heap values are behind `Arc` so that sharing (one object reachable twice)
/// is part of the model, as it is in PyTorch's object graph and in the pickle memo.
#[derive(Clone, Debug)]
pub enum IValue {
    /// `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` (TorchScript ints are 64-bit).
    Int(i64),
    /// A `float` (64-bit).
    Double(f64),
    /// A `complex`: real and imaginary parts.
    Complex(f64, f64),
    /// A `str`.
    String(Str),
    /// A `torch.device`.
    Device(Device),
    /// A tensor (a view of a shared storage).
    Tensor(Arc<Tensor>),
    /// A tuple, possibly a NamedTuple instance.
    Tuple(Arc<Tuple>),
    /// A list with its element type.
    List(Arc<List>),
    /// A dict with its key and value types.
    Dict(Arc<Dict>),
    /// An instance of a module or script class.
    Object(Arc<Object>),
    /// A member of a TorchScript enum.
    Enum(Arc<EnumValue>),
}

/// A tuple's items (pickle `TUPLE*`, flatbuffer `Tuple`).
#[derive(Clone, Debug)]
pub struct Tuple {
    /// The items, in order.
    pub items: Vec<IValue>,
    /// Set when the tuple is known to be a NamedTuple instance of this type.
    pub named: Option<QualifiedName>,
}

/// How a list's element type was recorded in the pickle.
#[derive(Clone, Debug)]
pub struct List {
    /// The element type: from `restore_type_tag`'s `List[T]` or a `build_intlist`-style
    /// builder; `Any` for a plain pickle list.
    pub elem_type: TypeExpr,
    /// The items, in order.
    pub items: Vec<IValue>,
}

/// A dict, with the key and value types its `restore_type_tag` gave (`Any` without one).
#[derive(Clone, Debug)]
pub struct Dict {
    /// The key type (`K` of `Dict[K, V]`).
    pub key_type: TypeExpr,
    /// The value type (`V` of `Dict[K, V]`).
    pub value_type: TypeExpr,
    /// In insertion order.
    pub entries: Vec<(IValue, IValue)>,
}

/// An object's state as pickled: its attributes, or what `__setstate__` receives.
#[derive(Clone, Debug)]
pub enum ObjectState {
    /// Attribute name/value pairs in slot order.
    Attributes(Vec<(Str, IValue)>),
    /// The value returned by `__getstate__`, to be passed to `__setstate__`.
    SetState(IValue),
}

/// An instance of a module class or script class.
#[derive(Clone, Debug)]
pub struct Object {
    /// The object's class (pickle `GLOBAL` / flatbuffer `ObjectType.type_name`).
    pub class: QualifiedName,
    /// The attributes, or the `__setstate__` state.
    pub state: ObjectState,
}

impl Object {
    /// The attributes in slot order; empty for an object restored by `__setstate__`.
    pub fn attributes(&self) -> &[(Str, IValue)] {
        match &self.state {
            ObjectState::Attributes(a) => a,
            ObjectState::SetState(_) => &[],
        }
    }

    /// The attribute called `name`, if the object has one.
    pub fn attribute(&self, name: &str) -> Option<&IValue> {
        self.attributes()
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// A member of a TorchScript enum, identified by its value.
#[derive(Clone, Debug)]
pub struct EnumValue {
    /// The enum class.
    pub enum_type: QualifiedName,
    /// The member's value (an int, float or str).
    pub value: IValue,
}

impl IValue {
    /// The value's kind as TorchScript names it (`int`, `Tensor`, `Object`), for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            IValue::None => "None",
            IValue::Bool(_) => "bool",
            IValue::Int(_) => "int",
            IValue::Double(_) => "float",
            IValue::Complex(..) => "complex",
            IValue::String(_) => "str",
            IValue::Device(_) => "Device",
            IValue::Tensor(_) => "Tensor",
            IValue::Tuple(_) => "Tuple",
            IValue::List(_) => "List",
            IValue::Dict(_) => "Dict",
            IValue::Object(_) => "Object",
            IValue::Enum(_) => "Enum",
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Arc<Object>> {
        match self {
            IValue::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&Arc<Tensor>> {
        match self {
            IValue::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The values directly inside this one: object attributes (or `__setstate__` state),
    /// tuple and list items, dict keys and values. Tensors' quantizer tensors are not
    /// values of the graph and are not included.
    pub fn children(&self) -> Vec<&IValue> {
        match self {
            IValue::Object(o) => match &o.state {
                ObjectState::Attributes(a) => a.iter().map(|(_, v)| v).collect(),
                ObjectState::SetState(s) => vec![s],
            },
            IValue::Tuple(t) => t.items.iter().collect(),
            IValue::List(l) => l.items.iter().collect(),
            IValue::Dict(d) => d.entries.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        }
    }

    /// Identity of a heap value (for sharing), `None` for immediates and strings.
    pub fn identity(&self) -> Option<usize> {
        match self {
            IValue::Tensor(t) => Some(Arc::as_ptr(t) as *const () as usize),
            IValue::Tuple(t) => Some(Arc::as_ptr(t) as *const () as usize),
            IValue::List(l) => Some(Arc::as_ptr(l) as *const () as usize),
            IValue::Dict(d) => Some(Arc::as_ptr(d) as *const () as usize),
            IValue::Object(o) => Some(Arc::as_ptr(o) as *const () as usize),
            IValue::Enum(e) => Some(Arc::as_ptr(e) as *const () as usize),
            _ => None,
        }
    }
}
