//! Integration tests: rotate.
