//! The pure core: observations in, commands out, time passed in.
//!
//! What may live here: plain data types, parsing, naming, scheduling and the CIS lifecycle state
//! machines. What may not: a Kubernetes client, an async runtime, reading the wall or monotonic
//! clock, random numbers, and iteration over hash-ordered collections (use `BTreeMap`/`BTreeSet`).
//! It is its own crate, depending on the API types (`image-scanner-api`) and plain-data
//! libraries only: `cargo tree -p image-scanner-core` shows no client, runtime or TLS (`make
//! core-deps-check`). `clippy.toml` bans the impure methods and types; `tests/purity.rs` fails
//! if a source here imports them.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

/// The ContainerImageScan resource, under the path the core's modules have always used.
pub use image_scanner_api as crd;

pub mod cis_status;
pub mod convert;
pub mod engine;
pub mod exception;
pub mod finding_record;
pub mod fingerprint;
pub mod image_ref;
pub mod metrics_model;
pub mod naming;
pub mod notice;
pub mod notification;
pub mod openreports;
pub mod package_match;
pub mod port;
pub mod report;
pub mod scan_job;
pub mod status;
#[cfg(any(test, feature = "test-kit"))]
pub mod test_kit;
pub mod time;
pub mod vex;
pub mod workload;
