//! The fault injector: which faults a seed enables, how often they fire, and until when (the
//! fault phase; then the heal phase, in which none fires). It draws from streams of its own,
//! so whether a fault fires never moves another component's stream: the same seed with one
//! fault more changes only what that fault touches.

use std::collections::BTreeSet;

use crate::cluster::T0;
use crate::event::Event;
use crate::options::{Fault, Options};
use crate::rng::{Concern, Draw, Rng, stream};
use crate::watcher::STREAMS;

/// The faults of a run.
pub struct Faults {
    enabled: BTreeSet<Fault>,
    /// Probability of an enabled fault per opportunity, before its scale.
    rate: f64,
    /// End of the fault phase (sim time).
    end: i64,
    healing: bool,
    /// Whether and how faults fire, and their details (delays, victims).
    rng: Rng,
    /// Configuration changes of restarted instances.
    config: Rng,
    fired: u64,
}

impl Faults {
    /// The faults `opts` enables, with the streams of its seed.
    pub fn new(opts: &Options) -> Faults {
        Faults {
            enabled: opts.faults.clone(),
            rate: opts.rate,
            end: T0 + opts.fault_phase.as_millis() as i64,
            healing: false,
            rng: stream(opts.seed, Concern::Faults),
            config: stream(opts.seed ^ 0x5eed, Concern::Faults),
            fired: 0,
        }
    }

    /// Whether `f` fires at this opportunity: enabled, still the fault phase, and the dice
    /// (`rate × scale`) say so.
    pub fn fires(&mut self, f: Fault, scale: f64) -> bool {
        if self.healing || !self.enabled.contains(&f) {
            return false;
        }
        let hit = self.rng.chance(self.rate * scale);
        if hit {
            self.fired += 1;
        }
        hit
    }

    /// The stream a fault that fired draws its details from.
    pub fn draw(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The stream of configuration changes.
    pub fn config_draw(&mut self) -> &mut Rng {
        &mut self.config
    }

    /// Faults stop: the heal phase begins.
    pub fn heal(&mut self) {
        self.healing = true;
    }

    /// Whether the heal phase has begun.
    pub fn healing(&self) -> bool {
        self.healing
    }

    /// When the fault phase ends.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Faults that fired so far.
    pub fn fired(&self) -> u64 {
        self.fired
    }

    /// The faults that happen at a time rather than at an opportunity (crashes, pauses of the
    /// leader, watch disconnects, clock jumps, users deleting things), for `instances`
    /// operator instances, spread over the fault phase.
    pub fn plan(&mut self, instances: usize) -> Vec<(i64, Event)> {
        let span = (self.end - T0).max(1) as u64;
        let has = |f| self.enabled.contains(&f);
        let (crash, failover, disconnect, clock, delete) = (
            has(Fault::Crash),
            has(Fault::Failover),
            has(Fault::Gone) || has(Fault::DropDelete),
            has(Fault::Clock),
            has(Fault::DeleteRace),
        );
        let r = &mut self.rng;
        let mut planned = Vec::new();
        if crash {
            for _ in 0..r.between(1, 4) {
                let t = T0 + r.between(30_000, span) as i64;
                let instance = r.index(instances);
                planned.push((t, Event::Crash { instance }));
            }
        }
        if failover {
            for _ in 0..r.between(1, 3) {
                let t = T0 + r.between(30_000, span) as i64;
                let ms = r.between(5_000, 60_000);
                let instance = usize::MAX;
                planned.push((t, Event::Pause { instance, ms }));
            }
        }
        if disconnect {
            for _ in 0..r.between(3, 20) {
                let t = T0 + r.between(10_000, span) as i64;
                let instance = r.index(instances);
                let kind = STREAMS[r.index(STREAMS.len())];
                let inc = u32::MAX;
                planned.push((
                    t,
                    Event::Disconnect {
                        instance,
                        inc,
                        kind,
                    },
                ));
            }
        }
        if clock {
            let t = T0 + r.between(30_000, span) as i64;
            let instance = r.index(instances);
            let ms = if r.chance(0.7) {
                r.between(60_000, 3_600_000) as i64
            } else {
                -(r.between(1_000, 120_000) as i64)
            };
            planned.push((t, Event::ClockJump { instance, ms }));
        }
        if delete {
            for _ in 0..r.between(2, 10) {
                let t = T0 + r.between(30_000, span) as i64;
                planned.push((t, Event::UserDelete));
            }
        }
        planned
    }
}
