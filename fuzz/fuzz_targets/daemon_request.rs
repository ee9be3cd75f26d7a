//! The daemon's `/cni` and `/delegate` request documents.
#![no_main]
use libfuzzer_sys::fuzz_target;
use multus::thick::api::Request;
use multus::thick::request::{Endpoint, extract};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else { return };
    let again: Request = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
    assert_eq!(again, req);
    for endpoint in [Endpoint::Cni, Endpoint::Delegate] {
        let _ = extract(endpoint, &req, &|c: &[u8]| Ok(c.to_vec()), "/opt/cni/bin");
    }
});
