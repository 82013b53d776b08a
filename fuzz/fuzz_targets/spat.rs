//! The SPAT decoder and request parsing on arbitrary bytes: no panic, no
//! read past the end (the sanitizer would see it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro::spat::Reader;

fuzz_target!(|data: &[u8]| {
    for item in Reader::new(data) {
        if item.is_err() {
            break;
        }
    }
    let _ = nitro::proto::parse_request(data);
    let _ = nitro::client::decode_list(data);
});
