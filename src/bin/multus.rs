//! `multus`: the thin meta-plugin the container runtime calls. Reads the multus config from
//! stdin, talks to the API server when it has a kubeconfig (or in-cluster settings), runs the
//! delegates in-process through the CNI core, prints the master's result.

#![no_main]

use multus::cni::error::Error;
use multus::cni::skel::{self, CmdArgs, Plugin};
use multus::cni::{RawExec, version};
use multus::k8s::cluster::ApiCluster;
use multus::logging;
use multus::multus::conf::NetConf;
use multus::multus::kube::{Cluster, NoCluster};
use multus::multus::ops::{self, Invocation};
use multus::multus::sandbox::Netns;
use serde_json::Value;

struct Multus;

/// The API server when the config has a kubeconfig (or the process has in-cluster settings).
fn cluster(conf: &NetConf) -> Result<Box<dyn Cluster>, Error> {
    Ok(match ApiCluster::from_kubeconfig(&conf.kubeconfig)? {
        Some(c) => Box::new(c),
        None => Box::new(NoCluster),
    })
}

fn prepare(args: &CmdArgs) -> Result<(NetConf, Invocation), Error> {
    let conf = NetConf::parse(&args.stdin)?;
    conf.init_logging();
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
        logged("ADD", cluster(&conf).and_then(|c| ops::add(&conf, &inv, c.as_ref(), &Netns, RawExec::default())))
    }

    fn del(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("DEL", cluster(&conf).and_then(|c| ops::del(&conf, &inv, c.as_ref(), RawExec::default())))
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("CHECK", cluster(&conf).and_then(|c| ops::check(&conf, &inv, c.as_ref(), RawExec::default())))
    }

    fn gc(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("GC", cluster(&conf).and_then(|c| ops::gc(&conf, &inv, c.as_ref(), RawExec::default())))
    }

    fn status(&self, args: &CmdArgs) -> Result<(), Error> {
        let (conf, inv) = prepare(args)?;
        logged("STATUS", cluster(&conf).and_then(|c| ops::status(&conf, &inv, c.as_ref(), RawExec::default())))
    }
}

/// The C entry point, without std's runtime start-up (see `skel::plugin_main`).
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // Started as cert-approver or kubeconfig_generator (the thin image links those names to us).
    if argc > 0 && !argv.is_null() {
        // SAFETY: the C runtime passes argc valid, NUL-terminated argument strings.
        let arg0 = unsafe { std::ffi::CStr::from_ptr(*argv) };
        if multus::multicall::is_tool(arg0.to_bytes()) {
            let args: Vec<String> = std::env::args().collect();
            return multus::multicall::dispatch(&args).map_or(1, std::ffi::c_int::from);
        }
    }
    skel::plugin_main(&Multus, "multus", version::ALL)
}
