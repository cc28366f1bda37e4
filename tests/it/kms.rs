//! Integration tests: kms.
