//! End-to-end tests: the operator binary against the local control plane (real kube-apiserver,
//! controller-manager, scheduler and etcd; kwok as the kubelet of most nodes, and one real node
//! with real trivy for `realnode`). Run with `make e2e` (part of
//! `make test`), which starts the control plane and installs the e2e overlay first; the tests
//! are `#[ignore]`d so that a plain `cargo test` without a cluster does not run them.
//!
//! Each test uses its own namespaces and its own operator process (which scans only those
//! namespaces), and runs alone (`--test-threads=1`) because all share the scan namespace.

// Tests drive real time and the environment; the purity lints are for the operator's core.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod exceptions;
mod notices;
mod operations;
mod realnode;
mod realnode_credentials;
mod scans;
mod sinks;
mod support;
mod workloads;
