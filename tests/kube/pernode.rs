//! Per-node certificates against the fake API server's `certificates.k8s.io/v1` (the fake stands
//! in for kube-apiserver, which cannot run here): the real `kubectl certificate approve`/`deny`
//! decides the request `multus::k8s::pernode` makes and waits on, and the real `cert-approver`
//! (the daemon binary started under that name) approves a multus node's request, denies an
//! impostor's and leaves other requests alone. Certificates are issued by the real `openssl ca`
//! with a test CA (`support::tls::Signer`, playing kube-controller-manager's signer).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use multus::k8s::client::{Source, connect};
use multus::k8s::{pernode, x509};
use serde_json::Value;

use crate::support::apiserver::FakeApiServer;
use crate::support::tls::{Signer, make_pki, openssl};
use crate::support::wait_for;

fn condition(csr: &Value) -> Option<(String, String)> {
    let c = csr["status"]["conditions"].as_array()?.first()?;
    Some((c["type"].as_str()?.to_string(), c["reason"].as_str().unwrap_or_default().to_string()))
}

/// `pernode::request` on its own runtime thread, as the daemon makes it.
fn request_in_background(kubeconfig: &Path, cert_dir: &Path) -> std::thread::JoinHandle<Result<pernode::Pair, String>> {
    let (kc, dir) = (kubeconfig.to_path_buf(), cert_dir.to_path_buf());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = connect(&Source::Kubeconfig(kc)).await.map_err(|e| e.to_string())?.expect("a client");
            let s = pernode::Settings { node: "node1".into(), cert_dir: dir, duration: Duration::from_secs(3600) };
            pernode::request(&client, &s, Duration::from_secs(60)).await.map_err(|e| e.to_string())
        })
    })
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("running kubectl");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn kubectl_certificate_approve_and_deny_decide_the_nodes_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d, "unused");
    let api = FakeApiServer::start();
    let _signer = Signer::start(d, api.handle(), Duration::from_secs(3600));
    let kc = api.write_kubeconfig(d);

    let waiting = request_in_background(&kc, &d.join("certs"));
    let csr = wait_for("the CSR", Duration::from_secs(10), || api.csrs().into_iter().next());
    let name = csr["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("csr-"), "{name}");
    assert_eq!(csr["spec"]["signerName"], pernode::SIGNER);
    assert_eq!(csr["spec"]["usages"], serde_json::json!(["digital signature", "client auth"]));
    // kubectl reads the request the way the real server serves it, and approves it.
    let (ok, out) = kubectl(&kc, &["get", "csr", &name, "-o", "jsonpath={.spec.signerName}"]);
    assert!(ok && out == pernode::SIGNER, "{out}");
    let (ok, out) = kubectl(&kc, &["certificate", "approve", &name]);
    assert!(ok && out.contains("approved"), "{out}");
    let pair = waiting.join().unwrap().expect("the issued certificate");
    assert_eq!(pair.issued.common_names, ["system:multus:node1"]);
    assert_eq!(condition(&api.csrs()[0]), Some(("Approved".into(), "KubectlApprove".into())));
    // The certificate chains to the test CA (openssl's verdict).
    std::fs::write(d.join("issued.pem"), x509::pem("CERTIFICATE", &pair.certificate)).unwrap();
    openssl(d, &["verify", "-CAfile", "ca.crt", "-purpose", "sslclient", "issued.pem"]);

    // A denied request is an error that says so; no certificate is issued for it.
    let waiting = request_in_background(&kc, &d.join("certs"));
    let second = wait_for("a second CSR", Duration::from_secs(10), || {
        api.csrs().into_iter().map(|c| c["metadata"]["name"].as_str().unwrap().to_string()).find(|n| *n != name)
    });
    let (ok, out) = kubectl(&kc, &["certificate", "deny", &second]);
    assert!(ok && out.contains("denied"), "{out}");
    let e = waiting.join().unwrap().unwrap_err();
    assert!(e.contains("was not granted: Denied"), "{e}");
}

/// The daemon binary started as `cert-approver`, killed on drop.
struct Approver(Child);

impl Approver {
    fn start(dir: &Path, kubeconfig: &Path) -> Approver {
        let link = dir.join("cert-approver");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multus-daemon"), &link).unwrap();
        let child = Command::new(&link)
            .arg("-kubeconfig")
            .arg(kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("approver.log")).unwrap())
            .spawn()
            .expect("starting cert-approver");
        Approver(child)
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A request (PKCS#10 DER) with the given subject, signed by a fresh key.
fn request_with(subject: &[(&[u8], &str)]) -> Vec<u8> {
    let key = x509::new_key().unwrap();
    let info = x509::seq(&[
        &x509::integer(&[0]),
        &x509::name(subject),
        &x509::public_key_info(&key).unwrap(),
        &x509::tlv(0xa0, &[]),
    ]);
    let sig = x509::sign(&key, &info).unwrap();
    x509::seq(&[&info, &x509::seq(&[&x509::tlv(0x06, x509::oid::ECDSA_SHA256)]), &x509::bit_string(&sig)])
}

#[test]
fn cert_approver_approves_a_node_denies_an_impostor_and_ignores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = FakeApiServer::start();
    let kc = api.write_kubeconfig(d);
    let (o, cn) = (x509::oid::ORGANIZATION, x509::oid::COMMON_NAME);
    let requests = [
        ("node", x509::node_request("worker-7", &x509::new_key().unwrap()).unwrap()),
        ("impostor", request_with(&[(o, "system:masters"), (cn, "system:multus:worker-7")])),
        ("kubelet", request_with(&[(o, "system:nodes"), (cn, "system:node:worker-7")])),
    ];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(&Source::Kubeconfig(kc.clone())).await.unwrap().unwrap();
        let api: Api<CertificateSigningRequest> = Api::all(client);
        for (name, der) in &requests {
            let mut o = pernode::request_object(&x509::pem("CERTIFICATE REQUEST", der), Duration::from_secs(3600));
            o.metadata.generate_name = None;
            o.metadata.name = Some(name.to_string());
            api.create(&PostParams::default(), &o).await.unwrap();
        }
    });
    let _approver = Approver::start(d, &kc);
    let by_name = |n: &str| api.csrs().into_iter().find(|c| c["metadata"]["name"] == n).unwrap();
    wait_for("both decisions", Duration::from_secs(20), || {
        (condition(&by_name("node")).is_some() && condition(&by_name("impostor")).is_some()).then_some(())
    });
    assert_eq!(condition(&by_name("node")), Some(("Approved".into(), "AutoApproved".into())));
    assert_eq!(condition(&by_name("impostor")).map(|c| c.0), Some("Denied".into()));
    assert!(by_name("impostor")["status"]["conditions"][0]["message"].as_str().unwrap().contains("O=system:multus"));
    // A request that is not a multus node's stays undecided (other approvers' business), also
    // after a later one was decided.
    let mut late = pernode::request_object(
        &x509::pem("CERTIFICATE REQUEST", &x509::node_request("worker-8", &x509::new_key().unwrap()).unwrap()),
        Duration::from_secs(3600),
    );
    late.metadata.generate_name = None;
    late.metadata.name = Some("late".into());
    rt.block_on(async {
        let client = connect(&Source::Kubeconfig(kc.clone())).await.unwrap().unwrap();
        Api::<CertificateSigningRequest>::all(client).create(&PostParams::default(), &late).await.unwrap();
    });
    wait_for("the late request's approval", Duration::from_secs(20), || condition(&by_name("late")));
    assert_eq!(condition(&by_name("kubelet")), None, "{}", by_name("kubelet"));
}

/// A process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubeconfig_generator` (the thin `multus` binary under that name, as the thin image links it)
/// gets the node's certificate with the bootstrap credentials (approved by `cert-approver`, issued
/// by `openssl ca`), and writes a kubeconfig with which our client and the real `kubectl` reach the
/// API server through TLS presenting `CN=system:multus:node7`.
#[test]
fn kubeconfig_generator_writes_a_kubeconfig_that_presents_the_node_certificate() {
    use crate::support::tls::TlsFront;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d, "unused");
    let api = FakeApiServer::start();
    api.create_pod(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "ns", "name": "p", "uid": "u"}}));
    let front = TlsFront::start(d, api.addr());
    let _signer = Signer::start(d, api.handle(), Duration::from_secs(3600));
    let admin = api.write_kubeconfig(d);
    let _approver = Approver::start(d, &admin);
    let boot = d.join("bootstrap.kubeconfig");
    std::fs::write(
        &boot,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}\n    \
             certificate-authority: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: b\n\
             current-context: c\nusers:\n- name: b\n  user:\n    token: bootstrap-token\n",
            front.addr,
            d.join("ca.crt").display()
        ),
    )
    .unwrap();
    let link = d.join("kubeconfig_generator");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multus"), &link).unwrap();
    let out = d.join("run/multus/kubeconfig");
    let log = std::fs::File::create(d.join("generator.log")).unwrap();
    let _generator = Running(
        Command::new(&link)
            .args(["-certdir", d.join("certs").to_str().unwrap(), "-bootstrap-config", boot.to_str().unwrap()])
            .args(["-kubeconfig", out.to_str().unwrap(), "-cert-duration", "1h"])
            .env("MULTUS_NODE_NAME", "node7")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kubeconfig_generator"),
    );
    wait_for("the generated kubeconfig", Duration::from_secs(30), || out.exists().then_some(()));
    let pair = std::fs::read_to_string(d.join("certs").join(pernode::CURRENT_FILE)).unwrap();
    assert!(pair.contains("BEGIN CERTIFICATE") && pair.contains("BEGIN PRIVATE KEY"));

    // Our client with that kubeconfig: TLS with the node's certificate.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(&Source::Kubeconfig(out.clone())).await.unwrap().expect("a client");
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "ns");
        pods.get("p").await.expect("GET through TLS with the node certificate");
    });
    assert!(front.client_cns.lock().unwrap().iter().any(|cn| cn == "system:multus:node7"), "{:?}", front.client_cns);
    // The real kubectl reads the same kubeconfig (certificate and key in one file, as upstream's).
    let before = front.client_cns.lock().unwrap().len();
    let (ok, text) = kubectl(&out, &["get", "pod", "-n", "ns", "p", "-o", "jsonpath={.metadata.uid}"]);
    assert!(ok && text == "u", "{text}");
    assert!(front.client_cns.lock().unwrap()[before..].iter().all(|cn| cn == "system:multus:node7"));
}
