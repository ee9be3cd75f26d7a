//! ADD, DEL, CHECK, GC and STATUS of the multus meta-plugin: resolve the delegates, save the
//! scratch cache, run each delegate through the CNI core, roll back on failure, fix up default
//! routes, and answer in the multus config's version.
//!
//! The walk of an ADD: [`add`] → `Cluster::pod` (gone → the empty result) → `resolve::delegates`
//! → `gateway::plan` → `scratch::save` → per delegate: free-ifname check (`netns`) →
//! `CniConfig::add_network[_list]` → `gateway::apply` → `AddedInterface` event → the
//! network-status annotation (`status`, through the `Cluster`) → the master's result converted to
//! the config's `cniVersion`. Any failure after a delegate ran rolls back every delegate.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::conf::NetConf;
use super::delegate::{Delegate, DelegateConfig};
use super::kube::{Cluster, EventType, K8sArgs, Pod, PodLookup};
use super::sandbox::Sandbox;
use super::{devinfo, gateway, resolve, scratch, status};
use crate::cni::cache::{self, Cached};
use crate::cni::exec::WithTimeout;
use crate::cni::network::{GcAttachment, validate_interface_name};
use crate::cni::result::{Cidr, CniResult, Interface, IpConfig};
use crate::cni::skel::Command;
use crate::cni::{CniConfig, Error, Exec, NetworkConfigList, RuntimeConf};
use crate::logging;

/// What the runtime handed us (CNI_* variables).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: String,
}

/// How long ADD, GC and STATUS wait for the readiness indicator file (upstream: 45 s, 1 s polls).
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(45);

fn wait_ready(file: &str, timeout: Duration) -> Result<(), Error> {
    if file.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    while !Path::new(file).exists() {
        if start.elapsed() >= timeout {
            return Err(Error::Cni(crate::cni::CniError::new(
                crate::cni::error::code::TRY_AGAIN_LATER,
                format!(
                    "have you checked that your default network is ready? still waiting for readinessindicatorfile @ {file}"
                ),
                format!("waited {}s", timeout.as_secs()),
            )));
        }
        std::thread::sleep(Duration::from_millis(100).min(timeout));
    }
    Ok(())
}

/// The result for a pod that vanished during ADD (the 4.2.1 fix, in the *requested* version):
/// one interface (CNI_IFNAME in CNI_NETNS) and 0.0.0.0/0.
pub fn empty_result(version: &str, inv: &Invocation) -> Result<Value, Error> {
    let r = CniResult {
        cni_version: version.into(),
        interfaces: vec![Interface { name: inv.ifname.clone(), sandbox: inv.netns.clone(), ..Default::default() }],
        ips: vec![IpConfig {
            interface: None,
            address: Cidr { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), prefix: 0 },
            gateway: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }],
        ..Default::default()
    };
    r.to_value(version)
}

/// The runtime the delegates run in: binDir first in the path, results cached under cniDir,
/// every plugin run bounded by `delegateTimeoutSeconds`.
pub fn runtime<E: Exec>(conf: &NetConf, inv: &Invocation, exec: E) -> CniConfig<WithTimeout<E>> {
    CniConfig::new(
        conf.plugin_path(&inv.path),
        &conf.cni_dir,
        WithTimeout { inner: exec, timeout: conf.delegate_timeout },
    )
}

/// The device-info file a delegate with an allocated device gets (runtimeConfig
/// `CNIDeviceInfoFile`), as upstream names it.
fn device_info_file(conf: &NetConf, inv: &Invocation, d: &Delegate, ifname: &str) -> Option<std::path::PathBuf> {
    d.requests.resource_name.as_ref()?;
    d.requests.device_id.as_ref()?;
    Some(devinfo::cni_path_for(&conf.device_info_dir, &d.name, &inv.container_id, ifname))
}

pub(super) fn runtime_conf(conf: &NetConf, inv: &Invocation, d: &Delegate, ifname: &str) -> RuntimeConf {
    let mut capability_args = d.capability_args(&conf.runtime_config);
    if let Some(file) = device_info_file(conf, inv, d, ifname) {
        capability_args.insert(devinfo::CAPABILITY.into(), Value::String(file.display().to_string()));
    }
    RuntimeConf {
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        ifname: ifname.into(),
        args: d.cni_args(&inv.args),
        capability_args,
        cache_dir: None,
    }
}

/// Copies the device plugin's device-info file for the delegate's device, if it left one
/// (upstream logs a failure and goes on: most device plugins write none).
fn provide_device_info(conf: &NetConf, inv: &Invocation, d: &Delegate, ifname: &str) {
    let (Some(file), Some(res), Some(id)) =
        (device_info_file(conf, inv, d, ifname), &d.requests.resource_name, &d.requests.device_id)
    else {
        return;
    };
    if let Err(e) = devinfo::copy_dp_to_cni(&conf.device_info_dir, res, id, &file) {
        logging::verbose(&format!("no device-info for {} ({ifname}): {e}", d.name));
    }
}

/// The delegate's device-info document for network-status, when there is one.
fn device_info(conf: &NetConf, inv: &Invocation, d: &Delegate, ifname: &str) -> Option<Value> {
    let file = device_info_file(conf, inv, d, ifname)?;
    match devinfo::read(&file) {
        Ok(info) => info.map(|i| i.to_value()),
        Err(e) => {
            logging::error(&format!("unreadable device-info {}: {e}", file.display()));
            None
        }
    }
}

/// Removes the delegate's device-info file on DEL and rollback; a failure is logged.
fn remove_device_info(conf: &NetConf, inv: &Invocation, d: &Delegate, ifname: &str) {
    if let Some(file) = device_info_file(conf, inv, d, ifname) {
        if let Err(e) = devinfo::remove(&file) {
            logging::error(&format!("cannot remove device-info {}: {e}", file.display()));
        }
    }
}

/// The one delegate runner (pod ADD/DEL/CHECK and rollback here, `/delegate` in `hotplug`): a
/// delegate is one plugin or a list, and each command goes to libcni's matching call. STATUS goes
/// to the list form of either (libcni has STATUS for lists only). ADD returns the result.
pub(super) fn run_delegate<E: Exec>(
    cni: &CniConfig<E>,
    d: &Delegate,
    rt: &RuntimeConf,
    cmd: Command,
) -> Result<Option<CniResult>, Error> {
    match (cmd, d.effective_config()) {
        (Command::Add, DelegateConfig::Single(p)) => cni.add_network(&p, rt).map(Some),
        (Command::Add, DelegateConfig::List(l)) => cni.add_network_list(&l, rt).map(Some),
        (Command::Del, DelegateConfig::Single(p)) => cni.del_network(&p, rt).map(|()| None),
        (Command::Del, DelegateConfig::List(l)) => cni.del_network_list(&l, rt).map(|()| None),
        (Command::Check, DelegateConfig::Single(p)) => cni.check_network(&p, rt).map(|()| None),
        (Command::Check, DelegateConfig::List(l)) => cni.check_network_list(&l, rt).map(|()| None),
        (Command::Status, config) => cni.status_network_list(&config.into_list()?).map(|()| None),
        (other, _) => Err(Error::InvalidEnv(format!("{} is not a command for one delegate", other.as_str()))),
    }
}

pub(super) fn delegate_add<E: Exec>(cni: &CniConfig<E>, d: &Delegate, rt: &RuntimeConf) -> Result<CniResult, Error> {
    run_delegate(cni, d, rt, Command::Add).map(|r| r.expect("ADD returns a result"))
}

pub(super) fn delegate_del<E: Exec>(cni: &CniConfig<E>, d: &Delegate, rt: &RuntimeConf) -> Result<(), Error> {
    run_delegate(cni, d, rt, Command::Del).map(drop)
}

/// Refuses an interface name that is invalid or already present in the pod.
pub(super) fn check_ifname_free(sandbox: &dyn Sandbox, netns_path: &str, ifname: &str) -> Result<(), Error> {
    validate_interface_name(ifname)?;
    if sandbox.link_exists(netns_path, ifname)? {
        return Err(Error::InvalidConfig(format!(
            "interface name {ifname} already exists in the pod network namespace {netns_path}"
        )));
    }
    Ok(())
}

/// Applies a delegate's default-route request in the pod and in its cached result.
fn fix_gateway(
    sandbox: &dyn Sandbox,
    conf: &NetConf,
    inv: &Invocation,
    d: &Delegate,
    ifname: &str,
) -> Result<(), Error> {
    for problem in sandbox.apply_gateway(&inv.netns, ifname, d)? {
        logging::error(&problem);
    }
    let file = cache::path(&conf.cni_dir, d.config.network_name(), &inv.container_id, ifname);
    if let Cached::V1(mut info) = cache::read(&file)? {
        if let Some(r) = info.result.as_mut() {
            gateway::edit_result(r, d);
            cache::write(&file, &info)?;
        }
    }
    Ok(())
}

/// ADD: returns the master's result in the multus config's `cniVersion`.
pub fn add<E: Exec>(
    conf: &NetConf,
    inv: &Invocation,
    cluster: &dyn Cluster,
    sandbox: &dyn Sandbox,
    exec: E,
) -> Result<Value, Error> {
    let k8s = K8sArgs::from_args(&inv.args);
    wait_ready(&conf.readiness_indicator_file, READINESS_TIMEOUT)?;
    let pod = match cluster.pod(&k8s).map_err(|e| e.context(format!("[{}]: error getting pod", k8s.describe())))? {
        PodLookup::NotFound => {
            logging::verbose(&format!("pod {} is gone; answering with an empty result", k8s.describe()));
            return empty_result(&conf.cni_version, inv);
        }
        PodLookup::Found(pod) => {
            pod.check_uid(&k8s)?;
            Some(pod)
        }
        PodLookup::NoClient => None,
    };
    let delegates = resolve::delegates(conf, &k8s, pod.as_ref(), cluster)
        .map_err(|e| e.context(format!("[{}]: error loading the networks", k8s.describe())))?;
    add_delegates(conf, inv, delegates, pod.as_ref(), cluster, sandbox, exec)
}

/// Logs an attachment and records upstream's `AddedInterface` event on the pod (`Add <if> [ips]
/// from <network>`); a delegate that reported nothing gets no event, as upstream.
pub(super) fn added_interface(
    cluster: &dyn Cluster,
    pod: Option<&Pod>,
    ifname: &str,
    result: &CniResult,
    network: &str,
) {
    let ips: Vec<String> = result.ips.iter().map(|ip| ip.address.to_string()).collect();
    let message = format!("Add {ifname} {} from {network}", go_list(&ips));
    logging::verbose(&message);
    if let Some(pod) = pod {
        if !(result.ips.is_empty() && result.interfaces.is_empty()) {
            cluster.event(pod, EventType::Normal, "AddedInterface", &message);
        }
    }
}

/// Go's `%v` of a string slice, as upstream's event messages show IPs: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// ADD of already-resolved delegates (master first): plan gateways, save the scratch cache, run,
/// report each interface as an event and all of them in the network-status annotation.
pub fn add_delegates<E: Exec>(
    conf: &NetConf,
    inv: &Invocation,
    mut delegates: Vec<Delegate>,
    pod: Option<&Pod>,
    cluster: &dyn Cluster,
    sandbox: &dyn Sandbox,
    exec: E,
) -> Result<Value, Error> {
    let k8s = K8sArgs::from_args(&inv.args);
    gateway::plan(&mut delegates)?;
    scratch::save(&conf.cni_dir, &inv.container_id, &delegates)
        .map_err(|e| e.context("failed to save the scratch cache".to_string()))?;
    let cni = runtime(conf, inv, exec);
    let mut master_result = None;
    let mut statuses = Vec::new();
    for (idx, d) in delegates.iter().enumerate() {
        let ifname = d.ifname(idx, &inv.ifname);
        let rt = runtime_conf(conf, inv, d, &ifname);
        provide_device_info(conf, inv, d, &ifname);
        let added = match check_ifname_free(sandbox, &inv.netns, &ifname) {
            // The name is taken: by another pod's interface, maybe. This delegate added nothing
            // and must not be DELed; only the ones before it are undone.
            Err(e) => Err((e, idx)),
            // The delegate may have added something before it failed: it is undone too.
            Ok(()) => delegate_add(&cni, d, &rt).map_err(|e| (e, idx + 1)),
        };
        let result = match added {
            Ok(r) => r,
            Err((e, undo)) => {
                let timed_out = (undo > idx && e.is_timeout()).then_some(idx);
                rollback(conf, inv, &cni, &delegates[..undo], timed_out);
                return Err(e.context(format!(
                    "[{}:{}]: error adding container to network {:?}",
                    k8s.describe(),
                    d.name,
                    d.name
                )));
            }
        };
        added_interface(cluster, pod, &ifname, &result, &d.name);
        statuses.extend(status::from_result(&result, &d.name, d.master, device_info(conf, inv, d, &ifname).as_ref()));
        if gateway::needs_edit(d) && !(result.ips.is_empty() && result.interfaces.is_empty()) {
            if let Err(e) = fix_gateway(sandbox, conf, inv, d, &ifname) {
                rollback(conf, inv, &cni, &delegates[..=idx], None);
                return Err(e.context(format!("default-route handling for {}", d.name)));
            }
        }
        if d.master || master_result.is_none() {
            master_result.get_or_insert(result);
        }
    }
    // Upstream skips this for pods *named* like a system namespace (a bug); we do not.
    if let Some(pod) = pod.filter(|_| cluster.has_client()) {
        if let Err(e) = cluster.set_network_status(pod, &statuses) {
            rollback(conf, inv, &cni, &delegates, None);
            return Err(e.context(format!("[{}]: error setting the networks status", k8s.describe())));
        }
    }
    let r = master_result.ok_or_else(|| Error::InvalidConfig("no delegates to add".into()))?;
    r.to_value(&conf.cni_version)
}

/// Undoes the delegates that were (or may have been) added, last first, then removes the scratch
/// cache this ADD wrote (nothing is left for a DEL to do) or, when a DEL failed, rewrites it with
/// exactly these delegates; errors are logged. The delegate at
/// `timed_out` hung on ADD: its DEL gets `rollbackTimeoutSeconds`, not another full timeout.
fn rollback<E: Exec>(
    conf: &NetConf,
    inv: &Invocation,
    cni: &CniConfig<E>,
    added: &[Delegate],
    timed_out: Option<usize>,
) {
    let mut failed = false;
    for (idx, d) in added.iter().enumerate().rev() {
        let ifname = d.ifname(idx, &inv.ifname);
        let rt = runtime_conf(conf, inv, d, &ifname);
        let deleted = if timed_out == Some(idx) {
            let short = WithTimeout { inner: &cni.exec, timeout: conf.rollback_timeout };
            delegate_del(&CniConfig::new(cni.path.clone(), cni.cache_dir.clone(), short), d, &rt)
        } else {
            delegate_del(cni, d, &rt)
        };
        if let Err(e) = deleted {
            logging::error(&format!("rollback of {} ({ifname}) failed: {e}", d.name));
            failed = true;
        }
        remove_device_info(conf, inv, d, &ifname);
    }
    // Nothing left to undo: the scratch file goes. A rollback DEL that failed leaves the record of
    // what this ADD ran (and nothing else), so the runtime's DEL can finish the job.
    let record = if failed && !added.is_empty() {
        scratch::save(&conf.cni_dir, &inv.container_id, added)
    } else {
        scratch::remove(&conf.cni_dir, &inv.container_id)
    };
    if let Err(e) = record {
        logging::error(&format!("rollback: {e}"));
    }
}

/// The delegates DEL and CHECK act on.
struct Recorded {
    delegates: Vec<Delegate>,
    /// Rebuilt from the configuration: no scratch cache says this container ever had them.
    rebuilt: bool,
}

/// The delegates DEL and CHECK act on: the scratch cache, else rebuilt from configuration.
fn recorded_delegates(
    conf: &NetConf,
    inv: &Invocation,
    cluster: &dyn Cluster,
    k8s: &K8sArgs,
    pod: &PodLookup,
) -> Option<Recorded> {
    match scratch::load(&conf.cni_dir, &inv.container_id, &conf.cni_version) {
        scratch::Loaded::Delegates(d) => return Some(Recorded { delegates: d, rebuilt: false }),
        scratch::Loaded::Missing => logging::error(&format!(
            "no scratch cache for container {} in {}",
            inv.container_id,
            conf.cni_dir.display()
        )),
        scratch::Loaded::Corrupt(e) => {
            logging::error(&format!("unusable scratch cache for container {}: {e}", inv.container_id))
        }
    }
    // Rebuildable when the configuration says it all: the pod still exists, or there is no
    // Kubernetes at all (static delegates). A vanished pod's annotation networks are unknowable.
    if matches!(pod, PodLookup::Found(_) | PodLookup::NoClient) {
        let pod = match pod {
            PodLookup::Found(p) => Some(p),
            _ => None,
        };
        match resolve::delegates(conf, k8s, pod, cluster).and_then(|mut d| gateway::plan(&mut d).map(|()| d)) {
            Ok(d) => {
                logging::error("deleting the delegates rebuilt from the configuration");
                return Some(Recorded { delegates: d, rebuilt: true });
            }
            Err(e) => logging::error(&format!("cannot rebuild the delegates: {e}")),
        }
    }
    None
}

/// The pod as DEL and CHECK see it: lookup errors and a UID mismatch (a new pod with the same
/// name) mean "not known", as upstream.
fn teardown_pod(cluster: &dyn Cluster, k8s: &K8sArgs) -> PodLookup {
    match cluster.teardown_pod(k8s) {
        Ok(PodLookup::Found(p)) if p.check_uid(k8s).is_err() => {
            logging::verbose(&format!("pod {} was replaced by a pod with UID {}", k8s.describe(), p.uid));
            PodLookup::NotFound
        }
        Ok(found) => found,
        Err(e) => {
            logging::error(&format!("pod {} unknown during teardown: {e}", k8s.describe()));
            PodLookup::NotFound
        }
    }
}

/// DEL: every delegate in reverse, all attempted, errors joined and returned.
pub fn del<E: Exec>(conf: &NetConf, inv: &Invocation, cluster: &dyn Cluster, exec: E) -> Result<(), Error> {
    let k8s = K8sArgs::from_args(&inv.args);
    if let Err(e) = wait_ready(&conf.readiness_indicator_file, Duration::ZERO) {
        logging::error(&format!("DEL proceeds although: {e}"));
    }
    let pod = teardown_pod(cluster, &k8s);
    let Some(Recorded { delegates, rebuilt }) = recorded_delegates(conf, inv, cluster, &k8s, &pod) else {
        logging::error(&format!("DEL of container {}: nothing known to delete; returning success", inv.container_id));
        return Ok(());
    };
    let cni = runtime(conf, inv, exec);
    let mut errors = Vec::new();
    for (idx, d) in delegates.iter().enumerate().rev() {
        let ifname = d.ifname(idx, &inv.ifname);
        let mut rt = runtime_conf(conf, inv, d, &ifname);
        // The scratch cache is written before any delegate runs and removed by a failed ADD's
        // rollback: without it and without the delegate's result cache, this container never had
        // the interface. An interface of that name in the namespace belongs to someone else (a
        // pod whose namespace a refused ADD named): the delegate frees what it may hold (IPAM by
        // container ID) but is given no namespace to delete interfaces in.
        if rebuilt && !cache::path(&conf.cni_dir, d.config.network_name(), &inv.container_id, &ifname).exists() {
            logging::verbose(&format!(
                "DEL of {} ({ifname}): container {} has no record of it; not touching the namespace",
                d.name, inv.container_id
            ));
            rt.netns = String::new();
        }
        if let Err(e) = delegate_del(&cni, d, &rt) {
            errors.push(e.context(format!("error deleting container from network {:?} ({ifname})", d.name)));
        }
        remove_device_info(conf, inv, d, &ifname);
    }
    if errors.is_empty() || !conf.retry_delete_on_error {
        scratch::remove(&conf.cni_dir, &inv.container_id)?;
    }
    Error::join(errors)
}

/// CHECK: every delegate that was added (inline delegates *and* the cluster network). Delegates
/// older than 0.4.0 cannot be checked and are skipped rather than failing the pod.
pub fn check<E: Exec>(conf: &NetConf, inv: &Invocation, cluster: &dyn Cluster, exec: E) -> Result<(), Error> {
    let k8s = K8sArgs::from_args(&inv.args);
    let pod = teardown_pod(cluster, &k8s);
    let delegates = recorded_delegates(conf, inv, cluster, &k8s, &pod)
        .ok_or_else(|| Error::InvalidConfig(format!("CHECK: no delegates known for container {}", inv.container_id)))?
        .delegates;
    let cni = runtime(conf, inv, exec);
    for (idx, d) in delegates.iter().enumerate() {
        let ifname = d.ifname(idx, &inv.ifname);
        let cfg = d.effective_config();
        if !crate::cni::version::Version::parse(cfg.cni_version())?.supports_check() {
            logging::verbose(&format!("CHECK skips {} (cniVersion {} predates CHECK)", d.name, cfg.cni_version()));
            continue;
        }
        let rt = runtime_conf(conf, inv, d, &ifname);
        run_delegate(&cni, d, &rt, Command::Check)
            .map_err(|e| e.context(format!("CHECK of network {:?} ({ifname})", d.name)))?;
    }
    Ok(())
}

fn cluster_network_list(conf: &NetConf, cluster: &dyn Cluster) -> Result<Option<NetworkConfigList>, Error> {
    let k8s = K8sArgs::default();
    let master = if resolve::uses_cluster_network(conf, cluster) {
        resolve::network(conf, cluster, &conf.cluster_network)?
    } else {
        match resolve::delegates(conf, &k8s, None, cluster)?.into_iter().next() {
            Some(d) => d,
            None => return Ok(None),
        }
    };
    master.config.into_list().map(Some)
}

/// GC of the cluster network. The runtime's `cni.dev/valid-attachments` is honoured (upstream
/// ignored it); without one, every attachment in multus's result cache counts as valid.
pub fn gc<E: Exec>(conf: &NetConf, inv: &Invocation, cluster: &dyn Cluster, exec: E) -> Result<(), Error> {
    wait_ready(&conf.readiness_indicator_file, READINESS_TIMEOUT)?;
    let Some(list) = cluster_network_list(conf, cluster)? else { return Ok(()) };
    let valid: Vec<GcAttachment> = match conf.raw.get("cni.dev/valid-attachments") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Error::Decoding(format!("invalid cni.dev/valid-attachments: {e}")))?,
        None => cache::attachments(&conf.cni_dir, None)?
            .into_iter()
            .map(|a| GcAttachment { container_id: a.container_id, ifname: a.if_name })
            .collect(),
    };
    runtime(conf, inv, exec).gc_network_list(&list, Some(&valid))
}

/// STATUS of the cluster network; the first failure keeps its code (50, 51, ...).
pub fn status<E: Exec>(conf: &NetConf, inv: &Invocation, cluster: &dyn Cluster, exec: E) -> Result<(), Error> {
    wait_ready(&conf.readiness_indicator_file, READINESS_TIMEOUT)?;
    let Some(list) = cluster_network_list(conf, cluster)? else { return Ok(()) };
    runtime(conf, inv, exec).status_network_list(&list)
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod ops_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_result_in_every_version() {
        let inv = Invocation { ifname: "eth0".into(), netns: "/var/run/netns/p".into(), ..Default::default() };
        assert_eq!(
            empty_result("1.1.0", &inv).unwrap().to_string(),
            r#"{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/p"}],"ips":[{"address":"0.0.0.0/0","gateway":"0.0.0.0"}],"dns":{}}"#
        );
        assert_eq!(
            empty_result("0.3.1", &inv).unwrap().to_string(),
            r#"{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/p"}],"ips":[{"version":"4","address":"0.0.0.0/0","gateway":"0.0.0.0"}],"dns":{}}"#
        );
        assert_eq!(
            empty_result("0.2.0", &inv).unwrap().to_string(),
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"0.0.0.0/0","gateway":"0.0.0.0"},"dns":{}}"#
        );
    }

    #[test]
    fn readiness_wait_times_out_with_try_again() {
        let e = wait_ready("/nonexistent/ready", Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.code(), 11);
        assert!(wait_ready("", Duration::ZERO).is_ok());
        assert!(wait_ready("/", Duration::ZERO).is_ok());
    }
}
