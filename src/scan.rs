//! scan (H5).
