//! secretbox provider (H1).
