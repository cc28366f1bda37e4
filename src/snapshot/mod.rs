//! snapshot files (H3).
