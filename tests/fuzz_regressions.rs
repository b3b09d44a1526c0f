//! Replays every input under `tests/fixtures/fuzz/<target>/` (the fuzz seeds plus every
//! input that ever crashed a target) through the same library entry points the `fuzz/`
//! targets call, so a past crash stays fixed without a fuzzer.

use std::path::PathBuf;

use image_scanner::core::report::fuzz_entry;

fn replay(target: &str, entry: fn(&[u8]) -> Result<(), String>) {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/fuzz", target]
        .iter()
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(violation) = entry(&data) {
            panic!("{}: {violation}", file.display());
        }
    }
    println!("{target}: replayed {} inputs", files.len());
}

#[test]
fn scan_report_corpus() {
    replay("scan_report", fuzz_entry::scan_report);
}

#[test]
fn status_message_corpus() {
    replay("status_message", fuzz_entry::status_message);
}

#[test]
fn image_ref_corpus() {
    replay("image_ref", image_scanner::core::image_ref::fuzz_entry);
}
