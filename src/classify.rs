//! classify (H5).
