//! rotate (later).
