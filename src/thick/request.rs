//! From a decoded request to a CNI invocation the daemon can run (upstream `extractCniData` and
//! `kubernetesRuntimeArgs`): the command, the required environment, CNI_ARGS, the pod identity
//! and the multus config with the daemon's overrides. Pure, except [`recover_pod_uid`], which
//! asks the cluster.
//!
//! Differences from upstream 4.2.1, on purpose:
//! - GC and STATUS need only CNI_COMMAND: the runtime sends them without container, netns,
//!   CNI_ARGS or pod identity, so upstream failed every one (fixed upstream in v4.3.0).
//! - DEL does not require CNI_NETNS (the CNI spec lets a runtime omit it for DEL).
//! - The request's CNI_PATH (else the daemon's own) is where delegates are found, and the
//!   request's CNI_ARGS reach the delegates; upstream ignored both.
//! - Empty items of CNI_ARGS (`a=b;`) are skipped rather than refused.

use super::api::Request;
use crate::cni::error::Error;
use crate::cni::skel::Command;
use crate::cni::validate;
use crate::multus::kube::{Cluster, K8sArgs, PodLookup};
use crate::multus::ops::Invocation;

/// Which endpoint the request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/cni`: a runtime's operation through the shim.
    Cni,
    /// `/delegate`: one delegate for a hot-plug client.
    Delegate,
}

impl Endpoint {
    fn accepts(self, cmd: Command) -> bool {
        match self {
            Endpoint::Cni => !matches!(cmd, Command::Version),
            Endpoint::Delegate => matches!(cmd, Command::Add | Command::Del | Command::Check | Command::Status),
        }
    }
}

/// The daemon's override of a request's config (`DaemonConfig::override_request_config`).
pub type OverrideConfig<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, Error> + 'a;

/// A request ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CniRequest {
    pub command: Command,
    pub invocation: Invocation,
    /// CNI_ARGS as the runtime wrote it (for messages).
    pub raw_args: String,
    pub k8s: K8sArgs,
    /// The request's config with the daemon config's keys copied over it.
    pub config: Vec<u8>,
}

impl CniRequest {
    /// Upstream's `printCmdArgs`, which prefixes every error so logs and events show the pod.
    pub fn describe(&self) -> String {
        let i = &self.invocation;
        format!(
            "ContainerID:{:?} Netns:{:?} IfName:{:?} Args:{:?} Path:{:?}",
            i.container_id, i.netns, i.ifname, self.raw_args, i.path
        )
    }

    fn needs_pod(&self) -> bool {
        matches!(self.command, Command::Add | Command::Del | Command::Check)
    }
}

fn missing(what: &str) -> Error {
    Error::InvalidEnv(format!("missing {what}"))
}

/// Parses CNI_ARGS: `;`-separated items, each exactly `key=value` (split on every `=`, as
/// upstream), keys and values trimmed.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, Error> {
    s.split(';')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let parts: Vec<&str> = item.split('=').collect();
            match parts[..] {
                [k, v] => Ok((k.trim().to_string(), v.trim().to_string())),
                _ => Err(Error::InvalidEnv(format!("invalid CNI_ARG '{item}'"))),
            }
        })
        .collect()
}

/// Checks and extracts a request. `overridden` is the daemon's config override applied to the
/// request's config (see `DaemonConfig::override_request_config`); `default_cni_path` is the
/// daemon's own CNI_PATH.
pub fn extract(
    endpoint: Endpoint,
    req: &Request,
    override_config: &OverrideConfig<'_>,
    default_cni_path: &str,
) -> Result<CniRequest, Error> {
    let mut request = command_args(endpoint, req, override_config)
        .map_err(|e| e.context("could not extract the CNI command args"))?;
    request.invocation.path =
        req.env.get("CNI_PATH").map(String::as_str).filter(|p| !p.is_empty()).unwrap_or(default_cni_path).to_string();
    let runtime_args = |e: Error| e.context("could not extract the kubernetes runtime args");
    validate::cni_args(&request.raw_args)?;
    request.invocation.args = parse_cni_args(&request.raw_args).map_err(runtime_args)?;
    let inv = &request.invocation;
    validate::invocation(request.command, &inv.container_id, &inv.ifname, &inv.args)?;
    request.k8s = K8sArgs::from_args(&request.invocation.args);
    if request.needs_pod() {
        let k = &request.k8s;
        for (key, value) in [("K8S_POD_NAMESPACE", &k.namespace), ("K8S_POD_NAME", &k.name)] {
            if value.is_empty() {
                return Err(runtime_args(missing(key)));
            }
        }
    }
    Ok(request)
}

/// The command, the CNI_* variables and the overridden config (upstream `extractCniData`).
fn command_args(endpoint: Endpoint, req: &Request, override_config: &OverrideConfig<'_>) -> Result<CniRequest, Error> {
    let env = |k: &str| req.env.get(k).map(String::as_str);
    let raw_cmd = env("CNI_COMMAND").ok_or_else(|| Error::InvalidEnv("unexpected or missing CNI_COMMAND".into()))?;
    let command = Command::parse(raw_cmd)
        .filter(|c| endpoint.accepts(*c))
        .ok_or_else(|| Error::InvalidEnv(format!("unknown cmd type: {raw_cmd}")))?;
    let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
    let required = |k: &str, needed: bool| match env(k) {
        Some(v) => Ok(v.to_string()),
        None if needed => Err(missing(k)),
        None => Ok(String::new()),
    };
    let container_id = required("CNI_CONTAINERID", per_container)?;
    let netns = required("CNI_NETNS", matches!(command, Command::Add | Command::Check))?;
    let ifname = if per_container { env("CNI_IFNAME").unwrap_or("eth0").to_string() } else { String::new() };
    let raw_args = required("CNI_ARGS", per_container)?;
    Ok(CniRequest {
        command,
        invocation: Invocation { container_id, netns, ifname, ..Default::default() },
        raw_args,
        k8s: K8sArgs::default(),
        config: override_config(&req.config)?,
    })
}

/// A runtime that does not pass K8S_POD_UID gets it from the API server (upstream `podUID`);
/// without a cluster client there is nothing to look up and the UID stays empty. DEL and CHECK
/// look the pod up as a teardown does (no waiting for it), and a DEL of a pod that is gone goes on
/// without a UID (upstream refused it, so a force-deleted pod's sandbox kept its interfaces and IPs
/// when the runtime passed no UID).
pub fn recover_pod_uid(request: &mut CniRequest, cluster: &dyn Cluster) -> Result<(), Error> {
    if !request.needs_pod() || !request.k8s.uid.is_empty() || !cluster.has_client() {
        return Ok(());
    }
    let failed = |e: Error| {
        e.context("could not extract the kubernetes runtime args: missing pod UID; attempted to recover it from the K8s API, but failed")
    };
    let lookup =
        if request.command == Command::Add { cluster.pod(&request.k8s) } else { cluster.teardown_pod(&request.k8s) };
    match lookup.map_err(failed)? {
        PodLookup::Found(pod) => {
            request.k8s.uid = pod.uid.clone();
            request.invocation.args.push(("K8S_POD_UID".into(), pod.uid));
            Ok(())
        }
        PodLookup::NotFound if request.command == Command::Del => Ok(()),
        other => {
            Err(failed(Error::InvalidEnv(format!("pod {}/{}: {other:?}", request.k8s.namespace, request.k8s.name))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multus::kube::Pod;
    use serde_json::Value;

    fn request(pairs: &[(&str, &str)]) -> Request {
        Request {
            env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            config: br#"{"cniVersion":"1.0.0","name":"m","type":"multus-shim"}"#.to_vec(),
            interface_attributes: None,
        }
    }

    fn no_override(c: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(c.to_vec())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/p"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns; K8S_POD_NAME = p ;K8S_POD_INFRA_CONTAINER_ID=c1"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    fn without(base: &[(&'static str, &'static str)], key: &str) -> Vec<(&'static str, &'static str)> {
        base.iter().copied().filter(|(k, _)| *k != key).collect()
    }

    fn with(
        base: &[(&'static str, &'static str)],
        key: &'static str,
        value: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut v = without(base, key);
        v.push((key, value));
        v
    }

    #[test]
    fn a_runtime_add() {
        let r = extract(Endpoint::Cni, &request(ADD), &no_override, "/daemon/bin").unwrap();
        assert_eq!(r.command, Command::Add);
        assert_eq!(r.invocation.ifname, "eth0", "CNI_IFNAME defaults to eth0");
        assert_eq!(r.invocation.path, "/opt/cni/bin:/usr/lib/cni", "the request's CNI_PATH");
        assert_eq!(
            r.invocation.args,
            [
                ("IgnoreUnknown", "1"),
                ("K8S_POD_NAMESPACE", "ns"),
                ("K8S_POD_NAME", "p"),
                ("K8S_POD_INFRA_CONTAINER_ID", "c1")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!((r.k8s.namespace.as_str(), r.k8s.name.as_str(), r.k8s.uid.as_str()), ("ns", "p", ""));
        assert_eq!(
            r.describe(),
            r#"ContainerID:"c1" Netns:"/var/run/netns/p" IfName:"eth0" Args:"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns; K8S_POD_NAME = p ;K8S_POD_INFRA_CONTAINER_ID=c1" Path:"/opt/cni/bin:/usr/lib/cni""#
        );
        let r = extract(Endpoint::Cni, &request(&without(ADD, "CNI_PATH")), &no_override, "/daemon/bin").unwrap();
        assert_eq!(r.invocation.path, "/daemon/bin", "the daemon's own CNI_PATH otherwise");
    }

    #[test]
    fn the_override_is_applied() {
        let over = |c: &[u8]| {
            let mut v: Value = serde_json::from_slice(c).unwrap();
            v["binDir"] = "/b".into();
            Ok(serde_json::to_vec(&v).unwrap())
        };
        let r = extract(Endpoint::Cni, &request(ADD), &over, "").unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&r.config).unwrap()["binDir"], "/b");
    }

    #[test]
    fn refusals() {
        let refused = |pairs: &[(&str, &str)], endpoint: Endpoint| {
            let e = extract(endpoint, &request(pairs), &no_override, "").unwrap_err();
            (e.code(), e.to_string())
        };
        assert_eq!(
            refused(&without(ADD, "CNI_COMMAND"), Endpoint::Cni),
            (4, "could not extract the CNI command args: unexpected or missing CNI_COMMAND".into())
        );
        assert_eq!(
            refused(&with(ADD, "CNI_COMMAND", "VERSION"), Endpoint::Cni),
            (4, "could not extract the CNI command args: unknown cmd type: VERSION".into())
        );
        assert_eq!(
            refused(&with(ADD, "CNI_COMMAND", "GC"), Endpoint::Delegate),
            (4, "could not extract the CNI command args: unknown cmd type: GC".into())
        );
        assert_eq!(
            refused(&without(ADD, "CNI_CONTAINERID"), Endpoint::Cni),
            (4, "could not extract the CNI command args: missing CNI_CONTAINERID".into())
        );
        assert_eq!(
            refused(&without(ADD, "CNI_NETNS"), Endpoint::Cni),
            (4, "could not extract the CNI command args: missing CNI_NETNS".into())
        );
        assert_eq!(
            refused(&without(ADD, "CNI_ARGS"), Endpoint::Cni),
            (4, "could not extract the CNI command args: missing CNI_ARGS".into())
        );
        assert_eq!(
            refused(&with(ADD, "CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME"), Endpoint::Cni),
            (4, "could not extract the kubernetes runtime args: invalid CNI_ARG 'K8S_POD_NAME'".into())
        );
        assert_eq!(
            refused(&with(ADD, "CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=a=b"), Endpoint::Cni).1,
            "could not extract the kubernetes runtime args: invalid CNI_ARG 'K8S_POD_NAME=a=b'"
        );
        assert_eq!(
            refused(&with(ADD, "CNI_ARGS", "K8S_POD_NAMESPACE=ns"), Endpoint::Cni).1,
            "could not extract the kubernetes runtime args: missing K8S_POD_NAME"
        );
        assert_eq!(
            refused(&with(ADD, "CNI_ARGS", ""), Endpoint::Delegate).1,
            "could not extract the kubernetes runtime args: missing K8S_POD_NAMESPACE"
        );
        let mut bad = request(ADD);
        bad.config = b"[]".to_vec();
        let over = |c: &[u8]| {
            crate::thick::daemon_config::override_config(
                c,
                &serde_json::Map::from_iter([("a".to_string(), Value::Null)]),
                true,
            )
        };
        assert_eq!(extract(Endpoint::Cni, &bad, &over, "").unwrap_err().code(), 6);
    }

    /// Upstream 4.2.1 refused GC and STATUS for want of CNI_ARGS (§9.1); a runtime sends neither.
    #[test]
    fn gc_and_status_need_only_the_command() {
        for cmd in ["GC", "STATUS"] {
            let r = extract(
                Endpoint::Cni,
                &request(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/opt/cni/bin")]),
                &no_override,
                "",
            )
            .unwrap();
            assert_eq!(r.command, Command::parse(cmd).unwrap());
            assert_eq!(r.invocation, Invocation { path: "/opt/cni/bin".into(), ..Default::default() });
        }
        let r =
            extract(Endpoint::Cni, &request(&without(&with(ADD, "CNI_COMMAND", "DEL"), "CNI_NETNS")), &no_override, "");
        assert_eq!(r.unwrap().invocation.netns, "", "DEL may come without a netns");
        let r = extract(
            Endpoint::Cni,
            &request(&with(ADD, "CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;")),
            &no_override,
            "",
        );
        assert_eq!(r.unwrap().invocation.args.len(), 2, "a trailing ; is not an item");
    }

    struct OnePod(PodLookup);
    impl Cluster for OnePod {
        fn pod(&self, _: &K8sArgs) -> Result<PodLookup, Error> {
            Ok(self.0.clone())
        }
        fn nad(&self, _: &str, _: &str) -> Result<Option<crate::multus::nad::NetworkAttachmentDefinition>, Error> {
            Ok(None)
        }
        fn has_client(&self) -> bool {
            true
        }
    }

    #[test]
    fn the_pod_uid_comes_from_the_cluster_when_the_runtime_omits_it() {
        let mut r = extract(Endpoint::Cni, &request(ADD), &no_override, "").unwrap();
        recover_pod_uid(&mut r, &crate::multus::kube::NoCluster).unwrap();
        assert_eq!(r.k8s.uid, "", "no client, nothing to recover");
        let pod = Pod { namespace: "ns".into(), name: "p".into(), uid: "u-1".into(), ..Default::default() };
        recover_pod_uid(&mut r, &OnePod(PodLookup::Found(pod))).unwrap();
        assert_eq!(r.k8s.uid, "u-1");
        assert_eq!(K8sArgs::from_args(&r.invocation.args).uid, "u-1", "and the delegates see it");
        let mut r = extract(Endpoint::Cni, &request(ADD), &no_override, "").unwrap();
        let e = recover_pod_uid(&mut r, &OnePod(PodLookup::NotFound)).unwrap_err();
        assert!(e.to_string().contains("missing pod UID; attempted to recover it from the K8s API"), "{e}");
        // A DEL of a pod that is gone proceeds without a UID.
        let del = with(ADD, "CNI_COMMAND", "DEL");
        let mut r = extract(Endpoint::Cni, &request(&del), &no_override, "").unwrap();
        recover_pod_uid(&mut r, &OnePod(PodLookup::NotFound)).unwrap();
        assert_eq!(r.k8s.uid, "");
    }
}
