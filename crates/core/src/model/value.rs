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
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text, or `None` if it is not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

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
    None,
    Bool(bool),
    Int(i64),
    Double(f64),
    Complex(f64, f64),
    String(Str),
    Device(Device),
    Tensor(Arc<Tensor>),
    Tuple(Arc<Tuple>),
    List(Arc<List>),
    Dict(Arc<Dict>),
    Object(Arc<Object>),
    Enum(Arc<EnumValue>),
}

#[derive(Clone, Debug)]
pub struct Tuple {
    pub items: Vec<IValue>,
    /// Set when the tuple is known to be a NamedTuple instance of this type.
    pub named: Option<QualifiedName>,
}

/// How a list's element type was recorded in the pickle.
#[derive(Clone, Debug)]
pub struct List {
    pub elem_type: TypeExpr,
    pub items: Vec<IValue>,
}

#[derive(Clone, Debug)]
pub struct Dict {
    pub key_type: TypeExpr,
    pub value_type: TypeExpr,
    /// In insertion order.
    pub entries: Vec<(IValue, IValue)>,
}

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
    pub class: QualifiedName,
    pub state: ObjectState,
}

impl Object {
    pub fn attributes(&self) -> &[(Str, IValue)] {
        match &self.state {
            ObjectState::Attributes(a) => a,
            ObjectState::SetState(_) => &[],
        }
    }

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
    pub enum_type: QualifiedName,
    pub value: IValue,
}

impl IValue {
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

    pub fn as_object(&self) -> Option<&Arc<Object>> {
        match self {
            IValue::Object(o) => Some(o),
            _ => None,
        }
    }

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
