//! The I/O shell: watches the Kubernetes API, turns objects into core observations, executes the
//! core's commands (server-side apply with field manager `image-scanner-operator`), runs leader
//! election and serves the HTTP endpoints. It holds no decisions of its own: everything it does
//! is either translating (`convert`, `errors`), transporting (`watch`, `execute`, `http`) or
//! wiring (`runtime`).

// The shell is where clocks, tasks and the environment are allowed (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod convert;
pub mod discovery;
pub mod errors;
pub mod execute;
pub mod http;
pub mod leader;
pub mod lean;
pub mod logging;
pub mod metrics;
pub mod nodes;
pub mod runtime;
pub mod sinks;
pub mod sync_gate;
pub mod watch;
