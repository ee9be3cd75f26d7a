//! `passthru`: a CNI plugin that does nothing, successfully (Multus 4.2.1's, for auxiliary chains).
//!
//! ADD prints a spec-correct empty result in the config's version, or the `prevResult` it was
//! given (converted to that version) so it can sit anywhere in a chain; DEL, CHECK, GC and STATUS
//! succeed.

#![no_main]

use multus_core::cni::error::Error;
use multus_core::cni::skel::{self, CmdArgs, Command, Plugin};
use multus_core::cni::{CniResult, version};
use serde_json::Value;

struct Passthru;

impl Plugin for Passthru {
    /// Never enters the namespace, so any CNI_NETNS will do (as upstream's passthru).
    fn validate_netns(&self, _: Command, _: &str) -> Result<(), Error> {
        Ok(())
    }

    fn add(&self, args: &CmdArgs) -> Result<Value, Error> {
        let conf: Value = serde_json::from_slice(&args.stdin)
            .map_err(|e| Error::Decoding(format!("error parsing passthru config: {e}")))?;
        let v = conf.get("cniVersion").and_then(Value::as_str).unwrap_or("0.1.0");
        match conf.get("prevResult") {
            Some(prev) if !prev.is_null() => CniResult::from_value(prev.clone(), v)?.to_value(v),
            _ => skel::empty_result(v),
        }
    }

    fn del(&self, _: &CmdArgs) -> Result<(), Error> {
        Ok(())
    }

    fn check(&self, _: &CmdArgs) -> Result<(), Error> {
        Ok(())
    }
}

/// The C entry point, without std's runtime start-up (see `skel::plugin_main`).
#[unsafe(no_mangle)]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    skel::plugin_main(&Passthru, "passthru", version::ALL)
}
