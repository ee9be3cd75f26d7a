//! The daemon with `perNodeCertificate` (upstream's per-node client certificates), end to end in
//! the node namespace: the fake API server (kube-apiserver cannot run here) behind a real TLS
//! front (rustls, a test CA made by `openssl`), the real `cert-approver` (the daemon binary under
//! that name) approving, the real `openssl ca` issuing (`support::tls::Signer`, playing
//! kube-controller-manager's signer) with a short lifetime: the daemon asks for `certDuration`
//! (10m, `expirationSeconds: 600`, the API's minimum) and the signer caps it at 20 s, as
//! kube-controller-manager's `--cluster-signing-duration` caps what is asked. The daemon asks with its bootstrap
//! token, then every connection that reads pods and NADs presents the issued certificate
//! (`CN=system:multus:node1`), and it rotates the certificate before it expires without a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multus::k8s::{pernode, x509};
use serde_json::json;

use crate::harness::{Daemon, daemon_config};
use crate::support::Node;
use crate::support::apiserver::FakeApiServer;
use crate::support::tls::{Signer, TlsFront, make_pki, subject_cn};
use crate::support::wait_for;

/// How long the signer's certificates live: the daemon renews at 70–90 % of it.
const LIFETIME: Duration = Duration::from_secs(20);

fn bootstrap_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: bootstrap\n\
         current-context: c\nusers:\n- name: bootstrap\n  user:\n    token: bootstrap-token\n",
        ca = dir.join("ca.crt").display()
    );
    let path = dir.join("bootstrap.kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

/// `cert-approver` in the node namespace, killed on drop.
struct Approver(Child);

impl Drop for Approver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn current_certificate(dir: &Path) -> Option<Vec<u8>> {
    let text = std::fs::read_to_string(dir.join(pernode::CURRENT_FILE)).ok()?;
    x509::pem_block(&text, "CERTIFICATE")
}

#[test]
fn the_daemon_gets_a_node_certificate_uses_it_for_every_watch_and_rotates_it() {
    let node = Node::new();
    let api = node.node.enter(FakeApiServer::start);
    let pki = node.path("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_pki(&pki, "unused");
    let front = node.node.enter(|| TlsFront::start(&pki, api.addr()));
    let boot = bootstrap_kubeconfig(&pki, &format!("https://{}", front.addr));
    let signer = Signer::start(&pki, api.handle(), LIFETIME);
    let link = node.path("cert-approver");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multus-daemon"), &link).unwrap();
    let log = std::fs::File::create(node.path("approver.log")).unwrap();
    let _approver = Approver(node.node.enter(|| {
        Command::new(&link)
            .arg("-kubeconfig")
            .arg(&boot)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting cert-approver")
    }));
    api.create_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-p"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "registry.example/c:1"}]}}));

    let certs = node.path("certs");
    let config = daemon_config(
        &node,
        json!({"perNodeCertificate": {"enabled": true, "bootstrapKubeconfig": boot, "certDir": certs,
            "certDuration": "10m"}}),
    );
    let daemon = Daemon::start(&node, &config);

    // One request, approved by cert-approver, issued by the signer; the pair is in certDir, 0600.
    let csrs = api.csrs();
    assert_eq!(csrs.len(), 1, "{csrs:?}");
    assert_eq!(csrs[0]["status"]["conditions"][0]["reason"], "AutoApproved");
    assert_eq!(csrs[0]["spec"]["expirationSeconds"], 600, "certDuration 10m");
    let first = current_certificate(&certs).expect("the pair in certDir");
    assert_eq!(x509::parse_certificate(&first).unwrap().common_names, ["system:multus:node1"]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(certs.join(pernode::CURRENT_FILE)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The request went out with the bootstrap token (no certificate); every connection that reads
    // pods or NADs presented the node's certificate.
    let conns = front.connections.lock().unwrap().clone();
    let csr_conns: Vec<_> =
        conns.iter().filter(|c| c.requests.iter().any(|r| r.starts_with("POST /apis/certificates.k8s.io"))).collect();
    assert!(!csr_conns.is_empty() && csr_conns.iter().all(|c| c.cert.is_none()), "{conns:?}");
    let api_conns: Vec<_> = conns
        .iter()
        .filter(|c| c.requests.iter().any(|r| r.contains("/pods") || r.contains("network-attachment-definitions")))
        .collect();
    assert!(!api_conns.is_empty(), "{conns:?}");
    for c in &api_conns {
        assert_eq!(c.cert.as_deref(), Some(first.as_slice()), "{:?}", c.requests);
        assert_eq!(subject_cn(c.cert.as_ref().unwrap()), "system:multus:node1");
    }

    // Before the certificate expires a second one is asked for, approved and stored.
    let second =
        wait_for("the rotated certificate", LIFETIME * 2, || current_certificate(&certs).filter(|c| *c != first));
    assert!(signer.issued.lock().unwrap().len() >= 2);
    let (a, b) = (x509::parse_certificate(&first).unwrap(), x509::parse_certificate(&second).unwrap());
    assert!(b.not_after > a.not_after && b.public_key_info != a.public_key_info, "a new key and a later expiry");

    // The daemon closed the connections made with the old certificate: its watches come back on
    // new connections that present the new one (nothing else made them reconnect).
    wait_for("the watches back with the new certificate", Duration::from_secs(30), || {
        front
            .connections
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.cert.as_deref() == Some(second.as_slice()) && c.requests.iter().any(|r| r.contains("/pods")))
            .then_some(())
    });
    assert_eq!(api.csrs().len(), signer.issued.lock().unwrap().len(), "every request was issued");
    drop(daemon);
}
