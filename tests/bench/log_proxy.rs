//! The chaos test's pod log endpoint: a TCP proxy on the port the kwok nodes announce for
//! their kubelet (`KWOK_NODE_PORT`, `up.sh` with `KWOK_LOG_PROXY=1`) in front of kwok's server.
//! The API server's `pods/log` requests go through it, so it can make the endpoint slow,
//! unavailable or hang. Bytes pass untouched (TLS end to end, kwok's certificate).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;

/// How the endpoint behaves towards new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogMode {
    Pass,
    /// Each connection waits this long before it is forwarded (under the API server's 10 s TLS
    /// handshake timeout for kubelets: slow, not broken).
    Slow(Duration),
    /// Connections are closed at once (a kubelet that is not listening).
    Down,
    /// Connections are accepted and held, unanswered, until the mode changes; then closed (a
    /// hung kubelet, restarted).
    Hang,
}

/// Connections seen per mode.
#[derive(Default)]
pub(crate) struct ProxyCounts {
    pub(crate) passed: AtomicU64,
    pub(crate) delayed: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) held: AtomicU64,
}

impl ProxyCounts {
    pub(crate) fn report(&self) -> Value {
        json!({
            "passed": self.passed.load(Ordering::Relaxed),
            "delayed": self.delayed.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "held": self.held.load(Ordering::Relaxed),
        })
    }
}

pub(crate) struct LogProxy {
    mode: watch::Sender<LogMode>,
    task: tokio::task::JoinHandle<()>,
    pub(crate) counts: Arc<ProxyCounts>,
}

impl LogProxy {
    /// Listens on 127.0.0.1:`listen`, forwarding to 127.0.0.1:`upstream`.
    pub(crate) async fn start(listen: u16, upstream: u16) -> Result<LogProxy> {
        let listener = TcpListener::bind(("127.0.0.1", listen))
            .await
            .with_context(|| format!("the log proxy cannot listen on 127.0.0.1:{listen}"))?;
        let (mode, modes) = watch::channel(LogMode::Pass);
        let counts = Arc::new(ProxyCounts::default());
        let task_counts = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let conn = match listener.accept().await {
                    Ok((conn, _)) => conn,
                    Err(e) => {
                        log(format!("log proxy: accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                tokio::spawn(serve(conn, upstream, modes.clone(), task_counts.clone()));
            }
        });
        Ok(LogProxy { mode, task, counts })
    }

    /// From now on; connections open in another mode are closed (a kubelet that goes away
    /// breaks them too, and the API server would otherwise reuse them).
    pub(crate) fn set(&self, mode: LogMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for LogProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut conn: TcpStream,
    upstream: u16,
    mut modes: watch::Receiver<LogMode>,
    counts: Arc<ProxyCounts>,
) {
    let mode = *modes.borrow_and_update();
    match mode {
        LogMode::Down => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        LogMode::Hang => {
            counts.held.fetch_add(1, Ordering::Relaxed);
            let _ = modes.changed().await;
            return;
        }
        LogMode::Slow(delay) => {
            counts.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = modes.changed() => return,
            }
        }
        LogMode::Pass => {
            counts.passed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut conn, &mut up) => {}
        _ = modes.wait_for(|m| *m != mode) => {}
    }
}
