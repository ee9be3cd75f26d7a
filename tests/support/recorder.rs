//! `cni-recorder`: a test-only CNI plugin built on our `skel`. It appends every invocation it
//! receives (command, CNI_* environment, config) as one JSON line to the file named by the
//! config's `recordFile`, so tests can assert on exactly what a runtime sent. It speaks every
//! version up to 1.1.0, including GC and STATUS, which Debian's reference plugins lack.
//!
//! Config keys it understands: `recordFile` (required), `ip` (ADD returns it on CNI_IFNAME),
//! `status` (`"unavailable"` makes STATUS fail with code 50), `fail` (a command name that fails
//! with code 111).

use std::io::Write;

use multus::cni::error::{CniError, Error};
use multus::cni::result::{Cidr, CniResult, Interface, IpConfig};
use multus::cni::skel::{self, CmdArgs, Command, Plugin};
use multus::cni::version;
use serde_json::{Value, json};

struct Recorder;

fn conf(args: &CmdArgs) -> Value {
    serde_json::from_slice(&args.stdin).unwrap_or(Value::Null)
}

fn record(command: &str, args: &CmdArgs) -> Result<Value, Error> {
    let c = conf(args);
    let file = c["recordFile"].as_str().ok_or_else(|| Error::InvalidConfig("recorder needs recordFile".into()))?;
    let line = json!({
        "command": command,
        "containerID": args.container_id,
        "netns": args.netns,
        "ifname": args.ifname,
        "args": args.args,
        "path": args.path,
        "config": c,
        // What a parent's malloc settings would leak into a plugin (the daemon's are its own).
        "glibcTunables": std::env::var("GLIBC_TUNABLES").ok(),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| Error::io("recorder cannot open", file, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io("recorder cannot write", file, e))?;
    if c["fail"].as_str() == Some(command) {
        return Err(Error::Cni(CniError::new(111, format!("recorder told to fail {command}"), "")));
    }
    Ok(c)
}

impl Plugin for Recorder {
    /// Never enters the namespace, so any CNI_NETNS will do (as upstream's passthru).
    fn validate_netns(&self, _: Command, _: &str) -> Result<(), Error> {
        Ok(())
    }

    fn add(&self, args: &CmdArgs) -> Result<Value, Error> {
        let c = record("ADD", args)?;
        let v = c["cniVersion"].as_str().unwrap_or("1.1.0").to_string();
        if let Some(prev) = c.get("prevResult").filter(|p| !p.is_null()) {
            return CniResult::from_value(prev.clone(), &v)?.to_value(&v);
        }
        let mut r = CniResult {
            interfaces: vec![Interface {
                name: args.ifname.clone(),
                sandbox: args.netns.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        if let Some(ip) = c["ip"].as_str() {
            r.ips.push(IpConfig { interface: Some(0), address: Cidr::parse(ip)?, gateway: None });
        }
        r.to_value(&v)
    }

    fn del(&self, args: &CmdArgs) -> Result<(), Error> {
        record("DEL", args).map(|_| ())
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        record("CHECK", args).map(|_| ())
    }

    fn gc(&self, args: &CmdArgs) -> Result<(), Error> {
        record("GC", args).map(|_| ())
    }

    fn status(&self, args: &CmdArgs) -> Result<(), Error> {
        let c = record("STATUS", args)?;
        if c["status"].as_str() == Some("unavailable") {
            return Err(Error::Cni(CniError::new(50, "recorder is unavailable", "told so by its config")));
        }
        Ok(())
    }
}

fn main() {
    skel::plugin_main(&Recorder, "cni-recorder", version::ALL)
}
