//! Pieces shared by tunstack's binaries: the built-in services, the
//! control socket (server in the daemon, client in the CLI), the CLI's
//! subcommands and the value parsers both binaries' flags use.

pub mod args;
pub mod cli;
pub mod control;
pub mod files;
pub mod privilege;
pub mod services;
