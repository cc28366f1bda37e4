//! Integration tests: cli_config.
