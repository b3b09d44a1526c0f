//! Bytes → bounded condition message; see
//! `image_scanner::core::report::fuzz_entry::status_message` for the checked invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = image_scanner::core::report::fuzz_entry::status_message(data) {
        panic!("{violation}");
    }
});
