//! Results of every version and their conversions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use multus::cni::CniResult;
use multus::cni::version::ALL;

fuzz_target!(|data: &[u8]| {
    for from in ALL {
        let Ok(r) = CniResult::parse(data, from) else { continue };
        for to in ALL {
            if let Ok(doc) = r.to_value(to) {
                let back = CniResult::from_value(doc.clone(), to).unwrap();
                assert_eq!(back.to_value(to).unwrap(), doc);
            }
        }
    }
});
