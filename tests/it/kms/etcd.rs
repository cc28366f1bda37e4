//! KMS with a real etcd and the atrest CLI: scan and rotate against real plugin processes.
