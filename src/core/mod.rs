//! The pure core: observations in, commands out, time passed in.
//!
//! What may live here: plain data types, parsing, naming, scheduling and the CIS lifecycle state
//! machines. What may not: a Kubernetes client, an async runtime, reading the wall or monotonic
//! clock, random numbers, and iteration over hash-ordered collections (use `BTreeMap`/`BTreeSet`).
//! `clippy.toml` bans those methods and types for the whole crate and the shell opts out
//! explicitly; `tests/purity.rs` fails if this module imports them.

pub mod cis_status;
pub mod engine;
pub mod fingerprint;
pub mod image_ref;
pub mod metrics_model;
pub mod naming;
pub mod openreports;
pub mod port;
pub mod report;
pub mod scan_job;
pub mod status;
pub mod time;
pub mod workload;
