//! kmsv1 provider (H1).
