//! `deployments/*.yml`: every YAML document parses, and the manifests carry what upstream v4.2.1
//! needs — the NAD CRD, RBAC, the thick DaemonSet's host mounts (incl. 4.2.1's
//! `/etc/cni/multus/net.d`), the init containers running `/install_multus`, digest-pinned image
//! placeholders — and agree with our binaries (the daemon config parses, its directories are
//! mounted, the thin entrypoint accepts its arguments, the images hold the commands).

use std::path::{Path, PathBuf};

use clap::Parser;
use multus::confgen::entrypoint::Args;
use multus::thick::daemon_config::DaemonConfig;
use multus::thick::manager::ManagerConfig;
use serde::Deserialize;
use serde_yaml::Value;

const THICK_IMAGE: &str = "ghcr.io/multus-rs/multus-rs:stable-thick";
const THIN_IMAGE: &str = "ghcr.io/multus-rs/multus-rs:stable";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence().unwrap().iter().map(s).collect()
}

/// (volume name, mountPath, mountPropagation, readOnly) of a container.
fn mounts(container: &Value) -> Vec<(&str, &str, Option<&str>, bool)> {
    container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                s(&m["name"]),
                s(&m["mountPath"]),
                m["mountPropagation"].as_str(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn host_path<'a>(pod: &'a Value, volume: &str) -> &'a str {
    let v = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"].as_str() == Some(volume)).unwrap();
    s(&v["hostPath"]["path"])
}

fn check_common(docs: &[Value], pod_verbs: &[&str]) {
    let crd = one(docs, "CustomResourceDefinition");
    assert_eq!(s(&crd["metadata"]["name"]), "network-attachment-definitions.k8s.cni.cncf.io");
    let spec = &crd["spec"];
    assert_eq!(s(&spec["group"]), "k8s.cni.cncf.io");
    assert_eq!(s(&spec["scope"]), "Namespaced");
    assert_eq!(s(&spec["names"]["kind"]), "NetworkAttachmentDefinition");
    assert_eq!(s(&spec["names"]["plural"]), "network-attachment-definitions");
    assert_eq!(strings(&spec["names"]["shortNames"]), ["net-attach-def"]);
    let v1 = &spec["versions"][0];
    assert_eq!((s(&v1["name"]), v1["served"].as_bool(), v1["storage"].as_bool()), ("v1", Some(true), Some(true)));
    let schema = &v1["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(s(&schema["properties"]["config"]["type"]), "string");

    let role = one(docs, "ClusterRole");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(strings(&rules[0]["apiGroups"]), ["k8s.cni.cncf.io"]);
    assert_eq!((strings(&rules[0]["resources"]), strings(&rules[0]["verbs"])), (vec!["*"], vec!["*"]));
    assert_eq!(strings(&rules[1]["resources"]), ["pods", "pods/status"]);
    assert_eq!(strings(&rules[1]["verbs"]), pod_verbs);
    assert_eq!(strings(&rules[2]["apiGroups"]), ["", "events.k8s.io"]);
    assert_eq!(strings(&rules[2]["verbs"]), ["create", "patch", "update"]);

    let binding = one(docs, "ClusterRoleBinding");
    assert_eq!(s(&binding["roleRef"]["name"]), "multus");
    assert_eq!(
        (s(&binding["subjects"][0]["name"]), s(&binding["subjects"][0]["namespace"])),
        ("multus", "kube-system")
    );
    let sa = one(docs, "ServiceAccount");
    assert_eq!((s(&sa["metadata"]["name"]), s(&sa["metadata"]["namespace"])), ("multus", "kube-system"));

    let pod = &one(docs, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(s(&pod["serviceAccountName"]), "multus");
    assert_eq!(pod["terminationGracePeriodSeconds"].as_u64(), Some(10));
    let tolerated: Vec<&str> = pod["tolerations"].as_sequence().unwrap().iter().map(|t| s(&t["effect"])).collect();
    assert_eq!(tolerated, ["NoSchedule", "NoExecute"]);
}

/// The init container: `/install_multus -t <flavor> -d /host/opt/cni/bin` with the host bin dir.
fn check_init(pod: &Value, flavor: &str, image: &str) {
    let init = &pod["initContainers"][0];
    assert_eq!(s(&init["image"]), image);
    assert_eq!(strings(&init["command"]), ["/install_multus", "-t", flavor, "-d", "/host/opt/cni/bin"]);
    assert_eq!(init["args"], Value::Null);
    assert_eq!(mounts(init), [("cnibin", "/host/opt/cni/bin", Some("Bidirectional"), false)]);
    assert_eq!(host_path(pod, "cnibin"), "/opt/cni/bin");
    assert_eq!(init["securityContext"]["privileged"].as_bool(), Some(true));
}

/// Every `image:` of the file is the digest placeholder the release step fills in.
fn check_images(file: &str, image: &str) {
    let text = std::fs::read_to_string(repo(file)).unwrap();
    let images: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("image: ")).collect();
    assert!(!images.is_empty());
    assert!(images.iter().all(|i| *i == image), "{file}: {images:?}");
}

#[test]
fn thick_daemonset() {
    let docs = documents("deployments/multus-daemonset-thick.yml");
    check_common(&docs, &["get", "list", "update", "watch"]);
    check_images("deployments/multus-daemonset-thick.yml", THICK_IMAGE);
    let pod = &one(&docs, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    check_init(pod, "thick", THICK_IMAGE);

    let daemon = &pod["containers"][0];
    assert_eq!(strings(&daemon["command"]), ["/usr/src/multus-cni/bin/multus-daemon"]);
    assert_eq!(daemon["securityContext"]["privileged"].as_bool(), Some(true));
    assert_eq!(s(&daemon["env"][0]["name"]), "MULTUS_NODE_NAME");
    assert_eq!(s(&daemon["env"][0]["valueFrom"]["fieldRef"]["fieldPath"]), "spec.nodeName");
    let want = [
        ("cni", "/etc/cni/net.d", "/host/etc/cni/net.d", None),
        ("cnibin", "/opt/cni/bin", "/opt/cni/bin", None),
        ("host-run", "/run", "/host/run", None),
        ("host-var-lib-cni-multus", "/var/lib/cni/multus", "/var/lib/cni/multus", None),
        ("host-var-lib-kubelet", "/var/lib/kubelet", "/var/lib/kubelet", Some("HostToContainer")),
        ("host-run-k8s-cni-cncf-io", "/run/k8s.cni.cncf.io", "/run/k8s.cni.cncf.io", None),
        ("host-run-netns", "/run/netns/", "/run/netns", Some("HostToContainer")),
        ("hostroot", "/", "/hostroot", Some("HostToContainer")),
        ("multus-conf-dir", "/etc/cni/multus/net.d", "/etc/cni/multus/net.d", None),
    ];
    let have = mounts(daemon);
    for (volume, host, container, propagation) in want {
        assert_eq!(host_path(pod, volume), host, "hostPath of {volume}");
        assert!(have.contains(&(volume, container, propagation, false)), "{volume} at {container} ({propagation:?})");
    }
    assert!(have.contains(&("multus-daemon-config", "/etc/cni/net.d/multus.d", None, true)));
    assert_eq!(have.len(), want.len() + 1, "no other mounts: {have:?}");

    // The daemon config is one our manager accepts, and every directory it names is mounted.
    let cm = one(&docs, "ConfigMap");
    assert_eq!(s(&cm["metadata"]["name"]), "multus-daemon-config");
    let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == "multus-daemon-config").unwrap();
    assert_eq!(s(&volume["configMap"]["items"][0]["path"]), "daemon-config.json");
    let json: serde_json::Value = serde_json::from_str(s(&cm["data"]["daemon-config.json"])).unwrap();
    let cfg = ManagerConfig::from_daemon(&DaemonConfig::parse(json.to_string().as_bytes()).unwrap());
    assert!(cfg.is_auto());
    let mounted = |p: &str| have.iter().any(|(_, m, _, _)| Path::new(p).starts_with(m));
    let socket_dir = json["socketDir"].as_str().unwrap();
    for dir in [cfg.cni_config_dir.to_str().unwrap(), &cfg.autoconfig_dir, socket_dir, "/hostroot"] {
        assert!(mounted(dir), "{dir} is not mounted");
    }
    assert_eq!(json["chrootDir"], "/hostroot");

    let image = std::fs::read_to_string(repo("images/thick.toml")).unwrap();
    for path in ["/usr/src/multus-cni/bin/multus-daemon", "/install_multus"] {
        assert!(image.contains(&format!("path = \"{path}\"")), "the thick image has no {path}");
    }
}

#[test]
fn thin_daemonset() {
    let docs = documents("deployments/multus-daemonset.yml");
    check_common(&docs, &["get", "update"]);
    check_images("deployments/multus-daemonset.yml", THIN_IMAGE);
    let pod = &one(&docs, "DaemonSet")["spec"]["template"]["spec"];
    check_init(pod, "thin", THIN_IMAGE);

    let c = &pod["containers"][0];
    assert_eq!(strings(&c["command"]), ["/thin_entrypoint"]);
    let args = Args::try_parse_from(std::iter::once("thin_entrypoint").chain(strings(&c["args"]))).unwrap();
    assert_eq!(args.multus_conf_file, "auto");
    assert_eq!(args.multus_autoconfig_dir, PathBuf::from("/host/etc/cni/net.d"));
    assert_eq!(args.cni_conf_dir, PathBuf::from("/host/etc/cni/net.d"));
    let have = mounts(c);
    assert_eq!(
        have,
        [
            ("cni", "/host/etc/cni/net.d", None, false),
            ("cnibin", "/host/opt/cni/bin", None, false),
            ("multus-cfg", "/tmp/multus-conf", None, false)
        ]
    );
    assert_eq!(args.cni_bin_dir, PathBuf::from("/host/opt/cni/bin"), "the default bin dir is the mount");
    assert_eq!(host_path(pod, "cni"), "/etc/cni/net.d");

    let cm = one(&docs, "ConfigMap");
    assert_eq!(s(&cm["metadata"]["name"]), "multus-cni-config");
    let conf: serde_json::Value = serde_json::from_str(s(&cm["data"]["cni-conf.json"])).unwrap();
    assert_eq!(conf["type"], "multus");
    let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == "multus-cfg").unwrap();
    assert_eq!(s(&volume["configMap"]["items"][0]["path"]), "70-multus.conf");

    let image = std::fs::read_to_string(repo("images/thin.toml")).unwrap();
    assert!(image.contains(r#"entrypoint = ["/thin_entrypoint"]"#));
    for path in
        ["/thin_entrypoint", "/install_multus", "/usr/src/multus-cni/bin/multus", "/usr/src/multus-cni/bin/passthru"]
    {
        assert!(image.contains(&format!("path = \"{path}\"")), "the thin image has no {path}");
    }
}

#[test]
fn per_node_certificates() {
    let file = "deployments/multus-per-node-certificates.yml";
    let docs = documents(file);
    check_images(file, THICK_IMAGE);
    // The daemon config replaces the thick manifest's (same name) with perNodeCertificate on, and
    // every path it names is one the thick DaemonSet mounts.
    let cm = one(&docs, "ConfigMap");
    assert_eq!(s(&cm["metadata"]["name"]), "multus-daemon-config");
    let json: serde_json::Value = serde_json::from_str(s(&cm["data"]["daemon-config.json"])).unwrap();
    let config = DaemonConfig::parse(json.to_string().as_bytes()).unwrap();
    let p = config.per_node_certificate.expect("perNodeCertificate");
    assert!(p.enabled);
    multus::k8s::pernode::settings("node1", &p.cert_dir, &p.cert_duration).expect("valid settings");
    let thick = documents("deployments/multus-daemonset-thick.yml");
    let daemon = &one(&thick, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    let have = mounts(daemon);
    for path in [p.bootstrap_kubeconfig.as_str(), p.cert_dir.as_str(), "/var/lib/kubelet/pki"] {
        assert!(have.iter().any(|(_, m, _, _)| Path::new(path).starts_with(m)), "{path} is not mounted");
    }
    // The daemon's identity (group system:multus) gets the multus role.
    let bindings: Vec<&Value> = docs.iter().filter(|d| s(&d["kind"]) == "ClusterRoleBinding").collect();
    assert!(bindings.iter().any(|b| {
        s(&b["roleRef"]["name"]) == "multus"
            && b["subjects"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|x| s(&x["kind"]) == "Group" && s(&x["name"]) == "system:multus")
    }));
    // cert-approver: may read requests, update their approval and approve for the signer.
    let role = one(&docs, "ClusterRole");
    let rules = role["rules"].as_sequence().unwrap();
    let grants = |resource: &str, verb: &str| {
        rules.iter().any(|r| strings(&r["resources"]).contains(&resource) && strings(&r["verbs"]).contains(&verb))
    };
    assert!(grants("certificatesigningrequests", "watch") && grants("certificatesigningrequests/approval", "update"));
    let signer = rules.iter().find(|r| strings(&r["resources"]) == ["signers"]).unwrap();
    assert_eq!(strings(&signer["resourceNames"]), [multus::k8s::pernode::SIGNER]);
    assert_eq!(strings(&signer["verbs"]), ["approve"]);
    let deployment = one(&docs, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["command"]), ["/cert-approver"]);
    assert_eq!(s(&deployment["spec"]["template"]["spec"]["serviceAccountName"]), "cert-approver");
    let image = std::fs::read_to_string(repo("images/thick.toml")).unwrap();
    assert!(image.contains("paths = [\"/cert-approver\"]"), "the thick image links /cert-approver");
}
