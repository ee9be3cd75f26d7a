//! One delegate on its own, outside a pod's ADD: what the daemon's `/delegate` API runs for
//! hot-plug clients (upstream `DelegateAdd`, `DelegateDel`, `DelegateCheck`, 4.2.4's STATUS).
//!
//! Unlike [`super::ops`] there is no scratch cache, no default-route handling, no rollback of other
//! delegates and no network-status: the caller owns the pod's state and gets every error back
//! (DEL errors too, because the container is not going away). `conf` carries the multus
//! settings (binDir, cniDir, ...) the delegate runs with.

use serde_json::Value;

use super::conf::NetConf;
use super::delegate::{Delegate, DelegateConfig, Requests};
use super::kube::{Cluster, Pod};
use super::ops::{self, Invocation};
use super::sandbox::Sandbox;
use crate::cni::skel::Command;
use crate::cni::{CniResult, Error, Exec};

/// The delegate a hot-plug request carries: its config (one plugin or a list, every key kept)
/// and the requests that came with it (`ips`, `mac`, `cni-args`).
pub fn load(config: &[u8], requests: Requests) -> Result<Delegate, Error> {
    let value: Value = serde_json::from_slice(config)
        .map_err(|e| Error::Decoding(format!("error loading the delegate config: {e}")))?;
    let mut d = Delegate::new(DelegateConfig::from_value(value, "")?);
    d.requests = requests;
    Ok(d)
}

/// ADD on `inv.ifname`, refused when that name is already taken in the pod. Like a pod's ADD it
/// records an `AddedInterface` event on `pod` (upstream `DelegateAdd`).
pub fn add<E: Exec>(
    conf: &NetConf,
    inv: &Invocation,
    d: &Delegate,
    pod: Option<&Pod>,
    cluster: &dyn Cluster,
    sandbox: &dyn Sandbox,
    exec: E,
) -> Result<CniResult, Error> {
    ops::check_ifname_free(sandbox, &inv.netns, &inv.ifname)
        .map_err(|e| e.context(format!("DelegateAdd: cannot set {:?} interface name to {:?}", d.name, inv.ifname)))?;
    let cni = ops::runtime(conf, inv, exec);
    let result = ops::delegate_add(&cni, d, &ops::runtime_conf(conf, inv, d, &inv.ifname))
        .map_err(|e| e.context(format!("DelegateAdd: error adding container to network {:?}", d.name)))?;
    ops::added_interface(cluster, pod, &inv.ifname, &result, &d.name);
    Ok(result)
}

/// DEL; errors are returned (the container stays).
pub fn del<E: Exec>(conf: &NetConf, inv: &Invocation, d: &Delegate, exec: E) -> Result<(), Error> {
    let cni = ops::runtime(conf, inv, exec);
    ops::delegate_del(&cni, d, &ops::runtime_conf(conf, inv, d, &inv.ifname))
        .map_err(|e| e.context(format!("DelegateDel: error deleting container from network {:?}", d.name)))
}

/// CHECK of the attachment on `inv.ifname`.
pub fn check<E: Exec>(conf: &NetConf, inv: &Invocation, d: &Delegate, exec: E) -> Result<(), Error> {
    let cni = ops::runtime(conf, inv, exec);
    ops::run_delegate(&cni, d, &ops::runtime_conf(conf, inv, d, &inv.ifname), Command::Check)
        .map(drop)
        .map_err(|e| e.context(format!("DelegateCheck: error checking network {:?}", d.name)))
}

/// STATUS of the delegate's network; the plugin's code (50, 51, ...) reaches the caller.
pub fn status<E: Exec>(conf: &NetConf, inv: &Invocation, d: &Delegate, exec: E) -> Result<(), Error> {
    let cni = ops::runtime(conf, inv, exec);
    ops::run_delegate(&cni, d, &ops::runtime_conf(conf, inv, d, &inv.ifname), Command::Status).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_singles_and_lists_with_their_requests() {
        let requests =
            Requests { mac: Some("c2:00:00:00:00:01".into()), ips: vec!["10.1.0.5/24".into()], ..Default::default() };
        let d = load(br#"{"cniVersion":"1.0.0","name":"hot","type":"bridge","vendor":1}"#, requests.clone()).unwrap();
        assert_eq!((d.name.as_str(), d.master), ("hot", false));
        assert_eq!(d.requests, requests);
        assert_eq!(d.config.to_value()["vendor"], 1, "plugin-specific keys survive");
        let l = load(br#"{"cniVersion":"1.0.0","name":"chain","plugins":[{"type":"bridge"}]}"#, Requests::default())
            .unwrap();
        assert!(matches!(l.config, DelegateConfig::List(_)));
        assert_eq!(load(b"{", Requests::default()).unwrap_err().code(), 6);
        assert_eq!(load(br#"{"name":"x"}"#, Requests::default()).unwrap_err().code(), 7, "no type");
    }
}
