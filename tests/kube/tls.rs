//! Our API-server client over TLS (`src/k8s/transport.rs`), as every real cluster is reached: a
//! TLS front (rustls, with a CA and certificates made by the `openssl` CLI in the test's temp dir)
//! before the fake API server checks the cluster CA, the server name and the client certificate.
//! (The fake stands in for kube-apiserver, which cannot run here; the TLS is real.)

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use multus::k8s::client::{Source, connect};
use serde_json::json;

use crate::support::apiserver::FakeApiServer;
use crate::support::tls::{TlsFront, make_pki};

/// A kubeconfig for `server` (https URL) with the CA file and user fields given.
fn kubeconfig(dir: &Path, server: &str, cluster_extra: &str, user: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{cluster_extra}\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {user}\n"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

fn get_pod(kubeconfig: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(&Source::Kubeconfig(kubeconfig.to_path_buf())).await.map_err(|e| e.to_string())?;
        let pods: Api<Pod> = Api::namespaced(client.expect("a client"), "ns");
        pods.get("p").await.map(|_| ()).map_err(|e| format!("{e:?}"))
    })
}

#[test]
fn the_client_verifies_the_cluster_ca_and_presents_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d, "system:multus:node1");
    let api = FakeApiServer::start();
    api.create_pod(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "ns", "name": "p"}}));
    let front = TlsFront::start(d, api.addr());
    let url = format!("https://{}", front.addr);
    let ca = format!("    certificate-authority: {}\n", d.join("ca.crt").display());
    let cert_files = format!(
        "{{client-certificate: {}, client-key: {}}}",
        d.join("client.crt").display(),
        d.join("client.key").display()
    );

    // The CA and the client certificate from files: the front sees the certificate's CN.
    get_pod(&kubeconfig(d, &url, &ca, &cert_files)).expect("a GET over TLS with a client certificate");
    assert_eq!(front.client_cns.lock().unwrap().as_slice(), ["system:multus:node1"]);
    assert!(
        api.requests().iter().any(|(m, p)| m == "GET" && p == "/api/v1/namespaces/ns/pods/p"),
        "{:?}",
        api.requests()
    );

    // The same inline (base64 data), with a token and no certificate, and with tls-server-name.
    use base64::Engine;
    let b64 = |f: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(f)).unwrap());
    let ca_data = format!("    certificate-authority-data: {}\n", b64("ca.crt"));
    let inline = format!("{{client-certificate-data: {}, client-key-data: {}}}", b64("client.crt"), b64("client.key"));
    get_pod(&kubeconfig(d, &url, &ca_data, &inline)).expect("inline certificate data");
    get_pod(&kubeconfig(d, &url, &ca_data, "{token: t}")).expect("a token over TLS");
    let by_name = format!("{ca_data}    tls-server-name: kubernetes.default.svc\n");
    get_pod(&kubeconfig(d, &url, &by_name, "{token: t}")).expect("tls-server-name");
    assert_eq!(front.client_cns.lock().unwrap().len(), 2, "certificates are sent only when configured");

    // A server the CA did not sign for the name asked, and a different CA, are refused.
    let wrong_name = format!("{ca_data}    tls-server-name: other.example\n");
    let e = get_pod(&kubeconfig(d, &url, &wrong_name, "{token: t}")).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let other = tempfile::tempdir().unwrap();
    make_pki(other.path(), "x");
    let other_ca = format!("    certificate-authority: {}\n", other.path().join("ca.crt").display());
    let e = get_pod(&kubeconfig(d, &url, &other_ca, "{token: t}")).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // insecure-skip-tls-verify accepts it.
    get_pod(&kubeconfig(d, &url, "    insecure-skip-tls-verify: true\n", "{token: t}"))
        .expect("insecure-skip-tls-verify");
}
