//! What an operator instance's watches hold: per stream the last resourceVersion delivered and
//! whether it is connected and listed; the streams and their numbering as the shell has them;
//! the Events the engine reacts to. The deliveries themselves are `sim/watch.rs`.

use image_scanner_core::port::StreamId;

use crate::cluster::{Kind, kind};

/// Every stream an instance watches (the configured kinds' metadata included).
pub const STREAMS: [Kind; 12] = [
    Kind::Pod,
    Kind::Cis,
    Kind::Workload(0),
    Kind::Workload(1),
    Kind::Workload(2),
    Kind::Workload(3),
    Kind::Workload(4),
    Kind::Workload(5),
    Kind::Workload(6),
    Kind::Job,
    Kind::ScanPod,
    Kind::Exception,
];

/// The shell's stream numbering: per scope pods, CIS, each kind; then Jobs and scan pods.
pub fn stream_id(k: Kind) -> StreamId {
    StreamId(match k {
        Kind::Pod => 1,
        Kind::Cis => 2,
        Kind::Workload(i) => 3 + u32::from(i),
        Kind::Job => 3 + u32::from(kind::CONFIGURED),
        Kind::ScanPod => 4 + u32::from(kind::CONFIGURED),
        Kind::Exception => 5 + u32::from(kind::CONFIGURED),
    })
}

/// One watch of one instance.
#[derive(Clone, Debug, Default)]
pub struct Watcher {
    /// Last resourceVersion delivered.
    pub cursor: u64,
    /// Connected (a disconnected watcher reconnects, possibly into a 410).
    pub connected: bool,
    /// Delivered its first complete list.
    pub listed: bool,
    /// A delivery is scheduled.
    pub scheduled: bool,
    /// The next reconnect must relist (a lost delete).
    pub must_relist: bool,
}

/// A `FailedCreate` Event of a scan Job, as the engine observes it.
#[derive(Clone, Debug)]
pub struct Rejection {
    /// The Job's namespace.
    pub namespace: String,
    /// The Job's name.
    pub job_name: String,
    /// The Job's UID.
    pub job_uid: String,
    /// The Event's message.
    pub message: String,
}

/// How long the API server keeps Events (`--event-ttl`).
pub const EVENT_TTL_MS: i64 = 3_600_000;
