//! What happens in a run: the events of the simulator's one queue, processed in (time,
//! sequence) order by [`crate::sim::Sim`].

use image_scanner_core::port::{Command, CommandId, Outcome};
use image_scanner_core::time::Timestamp;

use crate::cluster::Kind;
use crate::watcher::Rejection;

/// Kubelet steps of a workload pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodStep {
    /// Scheduled onto a node; containers waiting.
    Schedule,
    /// Images pulled (or not); containers running.
    Start,
    Ready,
    /// Job pod finished.
    Complete,
    /// A pull that failed turns into back-off.
    BackOff,
    /// In-place image update: restart the containers on the new image.
    Restart,
    /// Graceful deletion ends: the pod is removed.
    Remove,
}

/// Scan Job controller steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStep {
    /// Create the pod.
    CreatePod,
    /// Init container done; scan container starts (or cannot pull).
    Init,
    /// The scan container exits.
    Exit,
    /// activeDeadlineSeconds passed.
    Deadline,
    /// ttlSecondsAfterFinished passed.
    Ttl,
    /// Emit another BackOff event while the pod backs off.
    BackOffEvent,
}

/// Everything that can happen. `instance` is an operator instance's index and `inc` its
/// incarnation when the event was scheduled: an event for an earlier incarnation (before a
/// crash) is dropped.
#[derive(Clone, Debug)]
pub enum Event {
    /// A step of the workload script.
    Op { index: usize },
    /// A step of the exceptions script (`exceptions`).
    ExceptionOp { index: usize },
    /// A kubelet step of a workload pod.
    Pod {
        ns: String,
        name: String,
        uid: String,
        step: PodStep,
    },
    /// A controller reconciles a workload (`kind` indexes the workload kinds).
    Reconcile { kind: u8, ns: String, name: String },
    /// A CronJob's schedule fires.
    CronTick { ns: String, name: String },
    /// Cascade deletion of the dependents of an owner.
    Cascade { ns: String, owner_uid: String },
    /// The garbage collector looks at a CIS.
    GcCis { ns: String, name: String },
    /// A foreign finalizer is removed from a CIS.
    Finalize { ns: String, name: String },
    /// A namespace's deletion completes once it is empty.
    NsFinalize { ns: String },
    /// A step of the scan Job controller.
    Job {
        ns: String,
        name: String,
        uid: String,
        step: JobStep,
    },
    /// A scan pod is removed after its graceful deletion.
    ScanPodRemove {
        ns: String,
        name: String,
        uid: String,
    },
    /// Watch events of one stream reach an instance.
    Deliver {
        instance: usize,
        inc: u32,
        kind: Kind,
    },
    /// An instance (re)lists one stream.
    Relist {
        instance: usize,
        inc: u32,
        kind: Kind,
    },
    /// An instance lists the `trivy-job-config` ConfigMap.
    ListJobConfig { instance: usize, inc: u32 },
    /// A watch connection drops (`inc` `u32::MAX`: whatever incarnation runs then).
    Disconnect {
        instance: usize,
        inc: u32,
        kind: Kind,
    },
    /// A watch reconnects.
    Reconnect {
        instance: usize,
        inc: u32,
        kind: Kind,
    },
    /// A BackOff Event about a scan pod reaches an instance.
    BackOff {
        instance: usize,
        inc: u32,
        ns: String,
        pod: String,
    },
    /// A FailedCreate Event of a scan Job reaches an instance.
    JobRejected {
        instance: usize,
        inc: u32,
        rejection: Box<Rejection>,
    },
    /// A request reaches the API server.
    Arrive {
        instance: usize,
        inc: u32,
        /// The Lease's term when the request was sent.
        term: u64,
        /// When it was decided: the simulation's time, and the deciding engine's clock (which
        /// the clock fault skews).
        issued: (i64, Timestamp),
        command: Box<Command>,
    },
    /// The answer to a request reaches the instance.
    Reply {
        instance: usize,
        inc: u32,
        id: CommandId,
        outcome: Box<Outcome>,
    },
    /// An engine timer fires.
    Wake { instance: usize, inc: u32 },
    /// The instance tries to acquire or renew the Lease.
    LeaseTick { instance: usize, inc: u32 },
    /// A leadership change reaches the instance.
    Leadership {
        instance: usize,
        inc: u32,
        leading: bool,
    },
    /// The Lease watch shows the instance its own renewal: the Lease is valid until `until`
    /// by its clock (renewal plus duration, less the shell's margin).
    LeaseSeen {
        instance: usize,
        inc: u32,
        until: Timestamp,
    },
    /// The instance crashes.
    Crash { instance: usize },
    /// The instance restarts.
    Restart { instance: usize },
    /// The instance stops the world for `ms` (`instance` `usize::MAX`: the leader then).
    Pause { instance: usize, ms: u64 },
    /// The pause ends.
    Unpause { instance: usize },
    /// The instance's clock jumps by `ms`.
    ClockJump { instance: usize, ms: i64 },
    /// A user deletes something at random.
    UserDelete,
    /// Faults stop; the world must converge.
    HealStart,
    /// Convergence check.
    Check,
    /// End of the quiet window.
    QuietEnd,
}
