//! Pieces shared by tunstack's binaries: the built-in services and the
//! control socket (server in the daemon, client in the CLI).

pub mod control;
pub mod files;
pub mod get;
pub mod services;
