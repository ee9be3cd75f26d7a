//! The `k8s.v1.cni.cncf.io/networks` annotation, both forms.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = multus::multus::annotation::parse_networks(text, "default");
    }
});
