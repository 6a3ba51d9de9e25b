//! Method bodies of generated modules (in progress).
