//! connect (H5).
