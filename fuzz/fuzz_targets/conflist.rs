//! Plugin configs and conflists (libcni's loaders).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = multus::cni::config::PluginConfig::from_bytes(data) {
        assert_eq!(multus::cni::config::PluginConfig::from_bytes(&p.to_bytes()).unwrap(), p);
    }
    let _ = multus::cni::NetworkConfigList::from_bytes(data);
});
