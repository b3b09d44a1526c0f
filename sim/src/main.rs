//! `cargo run -p sim --release -- --seeds A..B [--faults LIST] [--jobs N] [--verbose]`: long
//! soaks with progress output, ending with one summary line.
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use sim::options::FaultSpec;

fn parse_range(s: &str) -> Option<(u64, u64)> {
    match s.split_once("..") {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let a: u64 = s.parse().ok()?;
            Some((a, a + 1))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds = (0u64, 100u64);
    let mut faults = String::new();
    let mut jobs = 1usize;
    let mut verbose = false;
    let mut i = 0;
    while i < args.len() {
        let next = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seeds" => {
                let Some(r) = parse_range(&next) else {
                    eprintln!("--seeds wants A..B");
                    return ExitCode::from(2);
                };
                seeds = r;
                i += 1;
            }
            "--faults" => {
                faults = next;
                i += 1;
            }
            "--jobs" => {
                jobs = next.parse().unwrap_or(1).max(1);
                i += 1;
            }
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => {
                println!(
                    "usage: sim --seeds A..B [--faults all|none|+crash,-gone|crash,gone] [--jobs N] [--verbose]"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let spec = match FaultSpec::parse(&faults) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let (from, to) = seeds;
    let total = to.saturating_sub(from);
    let next = std::sync::atomic::AtomicU64::new(from);
    let results = std::sync::Mutex::new((0u64, 0u64, 0u64, Vec::<u64>::new()));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= to {
                        return;
                    }
                    let (report, _) = sim::run_seed(seed, &spec, false);
                    let failed = !report.violations.is_empty();
                    if verbose || failed {
                        eprintln!(
                            "seed {seed}: {} events={} violations={} max_job_creates={} exception_ops={} suppressed_marks={} vex_marks={} exception_status_writes={} notice_events={} deliveries={} delivery_repeats={}",
                            report.options,
                            report.events,
                            report.violations.len(),
                            report.stats.max_job_creates,
                            report.stats.exception_ops,
                            report.stats.suppressed_marks,
                            report.stats.vex_marks,
                            report.stats.exception_status_writes,
                            report.stats.notice_events,
                            report.stats.deliveries,
                            report.stats.delivery_repeats
                        );
                    }
                    if failed {
                        eprintln!("{}", sim::explain_failure(seed, &spec, &faults));
                    }
                    let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                    r.0 += 1;
                    r.1 += report.events;
                    r.2 += report.violations.len() as u64;
                    if failed {
                        r.3.push(seed);
                    }
                    if r.0.is_multiple_of(100) {
                        let secs = started.elapsed().as_secs_f64().max(1e-9);
                        eprintln!(
                            "sim: {}/{total} seeds, {} events, {} violations, {:.0} events/s",
                            r.0,
                            r.1,
                            r.2,
                            r.1 as f64 / secs
                        );
                    }
                }
            });
        }
    });
    let r = results.lock().unwrap_or_else(|e| e.into_inner());
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    if !r.3.is_empty() {
        eprintln!("failing seeds: {:?}", r.3);
    }
    println!(
        "sim: seeds={} events={} violations={} events_per_sec={:.0}",
        r.0,
        r.1,
        r.2,
        r.1 as f64 / secs / jobs as f64
    );
    if r.2 == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
