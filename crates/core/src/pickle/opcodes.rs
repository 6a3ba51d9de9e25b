//! Opcode bytes of the dialect and their `pickletools` names.

/// `PROTO n`: the protocol version (TorchScript writes 2).
pub const PROTO: u8 = 0x80;
/// `STOP`: end of the pickle; the stack's single value is the result.
pub const STOP: u8 = b'.';
/// `GLOBAL module\nname\n`: pushes a class or function by name.
pub const GLOBAL: u8 = b'c';
/// `BINPUT i` (1-byte index): stores the top of the stack in the memo.
pub const BINPUT: u8 = b'q';
/// `LONG_BINPUT i` (4-byte index): stores the top of the stack in the memo.
pub const LONG_BINPUT: u8 = b'r';
/// `BINGET i` (1-byte index): pushes a memoized value.
pub const BINGET: u8 = b'h';
/// `LONG_BINGET i` (4-byte index): pushes a memoized value.
pub const LONG_BINGET: u8 = b'j';
/// `MARK`: marks the stack position where a run of items starts.
pub const MARK: u8 = b'(';
/// `EMPTY_TUPLE`: pushes `()`.
pub const EMPTY_TUPLE: u8 = b')';
/// `TUPLE1`: a 1-tuple of the top item.
pub const TUPLE1: u8 = 0x85;
/// `TUPLE2`: a 2-tuple of the top two items.
pub const TUPLE2: u8 = 0x86;
/// `TUPLE3`: a 3-tuple of the top three items.
pub const TUPLE3: u8 = 0x87;
/// `TUPLE`: a tuple of the items above the last MARK.
pub const TUPLE: u8 = b't';
/// `EMPTY_LIST`: pushes `[]`.
pub const EMPTY_LIST: u8 = b']';
/// `APPEND`: appends the top item to the list below it.
pub const APPEND: u8 = b'a';
/// `APPENDS`: appends the items above the last MARK to the list below it.
pub const APPENDS: u8 = b'e';
/// `LIST`: a list of the items above the last MARK.
pub const LIST: u8 = b'l';
/// `EMPTY_DICT`: pushes `{}`.
pub const EMPTY_DICT: u8 = b'}';
/// `DICT`: a dict of the key/value pairs above the last MARK.
pub const DICT: u8 = b'd';
/// `SETITEM`: sets one key/value pair in the dict below them.
pub const SETITEM: u8 = b's';
/// `SETITEMS`: sets the key/value pairs above the last MARK in the dict below it.
pub const SETITEMS: u8 = b'u';
/// `NEWOBJ`: `cls.__new__(cls, *args)`: how TorchScript objects are created.
pub const NEWOBJ: u8 = 0x81;
/// `BUILD`: sets an object's state (its attributes, or `__setstate__`'s argument).
pub const BUILD: u8 = b'b';
/// `REDUCE`: calls a global with an argument tuple (allow-listed globals only).
pub const REDUCE: u8 = b'R';
/// `BINPERSID`: a persistent id; in TorchScript, a tensor storage reference.
pub const BINPERSID: u8 = b'Q';
/// `BINUNICODE`: a string with a 4-byte little-endian length.
pub const BINUNICODE: u8 = b'X';
/// `BINUNICODE8`: a string with an 8-byte length (strings of 4 GiB and more).
pub const BINUNICODE8: u8 = 0x8d;
/// `BININT1`: an unsigned 1-byte int.
pub const BININT1: u8 = b'K';
/// `BININT2`: an unsigned 2-byte little-endian int.
pub const BININT2: u8 = b'M';
/// `BININT`: a signed 4-byte little-endian int.
pub const BININT: u8 = b'J';
/// `LONG1 n`: an n-byte two's-complement int (TorchScript writes n = 8).
pub const LONG1: u8 = 0x8a;
/// `BINFLOAT`: an 8-byte big-endian IEEE double.
pub const BINFLOAT: u8 = b'G';
/// `NEWTRUE`: pushes `True`.
pub const NEWTRUE: u8 = 0x88;
/// `NEWFALSE`: pushes `False`.
pub const NEWFALSE: u8 = 0x89;
/// `NONE`: pushes `None`.
pub const NONE: u8 = b'N';

/// The `pickletools` name of any protocol 0–5 opcode (for messages and disassembly).
pub fn name(op: u8) -> Option<&'static str> {
    Some(match op {
        PROTO => "PROTO",
        STOP => "STOP",
        GLOBAL => "GLOBAL",
        BINPUT => "BINPUT",
        LONG_BINPUT => "LONG_BINPUT",
        BINGET => "BINGET",
        LONG_BINGET => "LONG_BINGET",
        MARK => "MARK",
        EMPTY_TUPLE => "EMPTY_TUPLE",
        TUPLE1 => "TUPLE1",
        TUPLE2 => "TUPLE2",
        TUPLE3 => "TUPLE3",
        TUPLE => "TUPLE",
        EMPTY_LIST => "EMPTY_LIST",
        APPEND => "APPEND",
        APPENDS => "APPENDS",
        LIST => "LIST",
        EMPTY_DICT => "EMPTY_DICT",
        DICT => "DICT",
        SETITEM => "SETITEM",
        SETITEMS => "SETITEMS",
        NEWOBJ => "NEWOBJ",
        BUILD => "BUILD",
        REDUCE => "REDUCE",
        BINPERSID => "BINPERSID",
        BINUNICODE => "BINUNICODE",
        BINUNICODE8 => "BINUNICODE8",
        BININT1 => "BININT1",
        BININT2 => "BININT2",
        BININT => "BININT",
        LONG1 => "LONG1",
        BINFLOAT => "BINFLOAT",
        NEWTRUE => "NEWTRUE",
        NEWFALSE => "NEWFALSE",
        NONE => "NONE",
        // Valid Python pickle opcodes that this dialect rejects.
        0x95 => "FRAME",
        0x94 => "MEMOIZE",
        0x8c => "SHORT_BINUNICODE",
        0x93 => "STACK_GLOBAL",
        b'U' => "SHORT_BINSTRING",
        b'T' => "BINSTRING",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        b'V' => "UNICODE",
        b'I' => "INT",
        b'F' => "FLOAT",
        b'L' => "LONG",
        0x8b => "LONG4",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'p' => "PUT",
        b'g' => "GET",
        0x8f => "EMPTY_FROZENSET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'P' => "PERSID",
        b'S' => "STRING",
        b'o' => "OBJ",
        b'i' => "INST",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        _ => return None,
    })
}
