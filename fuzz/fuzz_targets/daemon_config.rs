//! daemon-config.json.
#![no_main]
use libfuzzer_sys::fuzz_target;
use multus::thick::daemon_config::DaemonConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = DaemonConfig::parse(data) {
        assert_eq!(DaemonConfig::parse(&serde_json::to_vec(&c.raw).unwrap()).unwrap(), c);
    }
});
