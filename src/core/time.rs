//! Time as data. The core never reads a clock: every function that needs "now" takes a
//! [`Timestamp`], so tests and the simulator drive time.

use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From whole seconds since the epoch.
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Whole seconds since the epoch (rounded down).
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Kubernetes `metav1.Time` keeps whole seconds; everything we write is truncated first so
    /// that what we read back compares equal to what we wrote.
    pub fn truncate_to_secs(self) -> Timestamp {
        Timestamp::from_secs(self.as_secs())
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating.
    pub fn minus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this is; zero when it is not after.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Converts to a Kubernetes time (whole seconds).
    pub fn to_k8s(self) -> Time {
        let ts =
            jiff::Timestamp::from_second(self.as_secs()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        Time(ts)
    }

    /// Converts from a Kubernetes time.
    pub fn from_k8s(time: &Time) -> Timestamp {
        Timestamp(time.0.as_millisecond())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_between_timestamps_are_never_negative() {
        let t = Timestamp(1_758_008_410_123);
        assert_eq!(
            t.plus(Duration::from_millis(1500)).since(t),
            Duration::from_millis(1500)
        );
        assert_eq!(t.since(t.plus(Duration::from_secs(1))), Duration::ZERO);
        assert_eq!(t.to_string(), "2025-09-16T07:40:10.123Z");
        assert_eq!(Timestamp(i64::MAX).to_string(), format!("{}ms", i64::MAX));
    }

    #[test]
    fn round_trips_through_kubernetes_time_at_second_precision() {
        let t = Timestamp(1_758_008_410_123);
        let back = Timestamp::from_k8s(&t.to_k8s());
        assert_eq!(back, t.truncate_to_secs());
        assert_eq!(back.0 % 1000, 0);
    }

    #[test]
    fn arithmetic_saturates_and_never_goes_negative() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t.plus(Duration::from_secs(5)), Timestamp::from_secs(15));
        assert_eq!(t.minus(Duration::from_secs(5)), Timestamp::from_secs(5));
        assert_eq!(Timestamp::from_secs(1).since(t), Duration::ZERO);
        assert_eq!(Timestamp(i64::MAX).plus(Duration::MAX), Timestamp(i64::MAX));
    }
}
