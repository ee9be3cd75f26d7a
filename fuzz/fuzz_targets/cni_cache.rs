//! libcni's result cache file (`cniCacheV1`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use multus::cni::cache::{Cached, encode, read};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("multus-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("net-c1-eth0");
    std::fs::write(&file, data).unwrap();
    if let Ok(Cached::V1(info)) = read(&file) {
        std::fs::write(&file, encode(&info).unwrap()).unwrap();
        match read(&file).unwrap() {
            Cached::V1(again) => assert_eq!(again, info),
            other => panic!("read back as {other:?}"),
        }
    }
});
