//! Pieces shared by tunstack's binaries: the built-in services.

pub mod services;
