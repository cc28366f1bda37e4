//! Live etcd source: paginated ranges pinned to one revision (H5).
