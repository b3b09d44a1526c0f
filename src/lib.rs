//! image-scanner: a Kubernetes operator that scans the container images running in a cluster.
//!
//! * [`crd`]: the `ContainerImageScan` resource (plain data).
//! * [`config`]: command-line and environment configuration.
//! * [`core`]: every decision, as pure deterministic functions and state machines.
//! * [`shell`]: the kube-rs I/O shell that feeds the core and executes its commands.
//!
//! See `ARCHITECTURE.md` for the pipeline and the purity boundary.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod config;
pub mod core;
pub mod crd;
pub mod report_cli;
pub mod shell;
