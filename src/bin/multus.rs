//! `multus`: the thin meta-plugin the container runtime calls. Reads the multus config from
//! stdin, runs the delegates in-process through the CNI core, prints the master's result.

use multus::cni::error::Error;
use multus::cni::skel::{self, CmdArgs, Plugin};
use multus::cni::{RawExec, version};
use multus::multus::conf::NetConf;
use multus::multus::kube::NoCluster;
use multus::multus::logging;
use multus::multus::ops::{self, Invocation};
use serde_json::Value;

struct Multus;

fn prepare(args: &CmdArgs) -> Result<(NetConf, Invocation), Error> {
    let conf = NetConf::parse(&args.stdin)?;
    logging::init(&conf);
    let inv = Invocation {
        container_id: args.container_id.clone(),
        netns: args.netns.clone(),
        ifname: args.ifname.clone(),
        args: args.args_pairs(),
        path: args.path.clone(),
    };
    Ok((conf, inv))
}

/// Logs a failure before skel prints it as the CNI error object.
fn logged<T>(what: &str, r: Result<T, Error>) -> Result<T, Error> {
    if let Err(e) = &r {
        logging::error(&format!("{what}: {e}"));
    }
    r
}

impl Plugin for Multus {
    fn add(&self, args: &CmdArgs) -> Result<Value, Error> {
        let (conf, inv) = prepare(args)?;
        logged("ADD", ops::add(&conf, &inv, &NoCluster, RawExec::default()))
    }

    fn del(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("DEL", ops::del(&conf, &inv, &NoCluster, RawExec::default()))
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("CHECK", ops::check(&conf, &inv, &NoCluster, RawExec::default()))
    }

    fn gc(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("GC", ops::gc(&conf, &inv, &NoCluster, RawExec::default()))
    }

    fn status(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("STATUS", ops::status(&conf, &inv, &NoCluster, RawExec::default()))
    }
}

fn main() {
    skel::plugin_main(&Multus, "multus", version::ALL)
}
