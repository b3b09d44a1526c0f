//! Image references (spec image / status image / imageID lines) → parse, canonical round trip,
//! container-image extraction; see `image_scanner::core::image_ref::fuzz_entry`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = image_scanner::core::image_ref::fuzz_entry(data) {
        panic!("{violation}");
    }
});
