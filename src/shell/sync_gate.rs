//! Readiness after the first lists: the last watch stream to deliver its first complete list
//! tells the engine (`CachesSynced`) and turns the readiness probe ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::core::port::Observation;

/// Counts streams that have not delivered their first complete list; the last one to do so
/// tells the engine the caches are synced.
#[derive(Clone)]
pub struct SyncGate {
    pending: Arc<AtomicUsize>,
    ready: Arc<tokio::sync::watch::Sender<bool>>,
}

impl SyncGate {
    /// A gate waiting for `streams` first lists.
    pub fn new(streams: usize) -> (SyncGate, tokio::sync::watch::Receiver<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(streams == 0);
        (
            SyncGate {
                pending: Arc::new(AtomicUsize::new(streams)),
                ready: Arc::new(tx),
            },
            rx,
        )
    }

    pub(super) async fn done_one(&self, tx: &mpsc::Sender<Observation>) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = tx.send(Observation::CachesSynced).await;
            let _ = self.ready.send(true);
        }
    }
}
