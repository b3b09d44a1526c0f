//! image-scanner: a Kubernetes operator that scans the container images running in a cluster.
//!
//! * [`crd`]: the `ContainerImageScan` resource (plain data; crate `image-scanner-api`).
//! * [`config`]: command-line and environment configuration.
//! * [`core`]: every decision, as pure deterministic functions and state machines (crate
//!   `image-scanner-core`, which cannot depend on a client or runtime: the crate graph is the
//!   wall).
//! * [`shell`]: the kube-rs I/O shell that feeds the core and executes its commands.
//!
//! See `ARCHITECTURE.md` for the pipeline and the purity boundary.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod config;
pub use image_scanner_api as crd;
pub use image_scanner_core as core;
pub mod report_cli;
pub mod shell;
