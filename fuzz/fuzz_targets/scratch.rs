//! The scratch cache `<cniDir>/<containerID>`, ours or Go multus's.
#![no_main]
use libfuzzer_sys::fuzz_target;
use multus::multus::scratch::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode(data, "1.0.0") {
        assert_eq!(decode(&encode(&d), "1.0.0").unwrap(), d);
    }
});
