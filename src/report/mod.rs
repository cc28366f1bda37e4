//! report (H5).
