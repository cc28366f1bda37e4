//! aescbc provider (H1).
