//! The multus net conf (stdin of the thin plugin and of every daemon request).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = multus::multus::conf::NetConf::parse_settings(data) {
        let again = multus::multus::conf::NetConf::parse_settings(&serde_json::to_vec(&c.raw).unwrap()).unwrap();
        assert_eq!(again, c);
    }
});
