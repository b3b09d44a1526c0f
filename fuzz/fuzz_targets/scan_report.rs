//! Bytes → `parse_report(Auto)` → budgeted success status; see
//! `image_scanner::core::report::fuzz_entry::scan_report` for the checked invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = image_scanner::core::report::fuzz_entry::scan_report(data) {
        panic!("{violation}");
    }
});
