//! Runtimes execute the stack plan; `native` is the one without Docker.

pub mod native;
pub mod process;
