//! Integration tests: cli_decode.
