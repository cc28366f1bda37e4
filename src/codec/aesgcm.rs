//! aesgcm provider (H1).
