//! Integration tests: snapshot.
