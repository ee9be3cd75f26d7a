//! `cert-approver`: approves the CertificateSigningRequests of multus nodes' per-node client
//! certificates and denies the ones that claim to be but do not match the rules, as upstream's
//! cert-approver. A request is ours when its signer is `kubernetes.io/kube-apiserver-client` and
//! its subject's common name starts with `system:multus:`; every other request is left alone for
//! other approvers. Ours is approved only when
//! - its self-signature verifies (ECDSA P-256 or RSA, SHA-256),
//! - the subject is exactly `O=system:multus` and one `CN=system:multus:<node>` with a valid node
//!   name (a DNS-1123 subdomain), nothing else,
//! - it asks for no attributes (no extension requests: no subject alternative names),
//! - its usages are within digital signature, key encipherment and client auth, and include
//!   client auth;
//! - when a node asked (requester `system:node:<name>`, the kubelet's credentials as bootstrap),
//!   it is the node the certificate names: a node cannot get another node's identity;
//!
//! else it is denied with the rule it broke. A request already approved, denied or failed is not
//! touched again. The decision is a plain function; the watch and the `approval` writes are the edge.

use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use super::Error;
use super::pernode::SIGNER;
use super::x509;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny(String),
    /// Not ours, or already decided.
    Ignore,
}

const ALLOWED_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// A DNS-1123 subdomain (what a node name is).
pub fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The decision on one request (pure).
pub fn decide(csr: &CertificateSigningRequest) -> Decision {
    if csr.spec.signer_name != SIGNER {
        return Decision::Ignore;
    }
    let decided = csr.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter().any(|c| ["Approved", "Denied", "Failed"].contains(&c.type_.as_str()) && c.status == "True")
    });
    if decided {
        return Decision::Ignore;
    }
    let text = String::from_utf8_lossy(&csr.spec.request.0);
    let Some(der) = x509::pem_block(&text, "CERTIFICATE REQUEST") else { return Decision::Ignore };
    // Ours is decided by the name it claims, before its signature is checked: a forged request for
    // a multus identity is denied, not left to other approvers.
    let claims_ours = x509::Der(&der).expect(0x30, "").is_ok() && contains_multus_cn(&der);
    let r = match x509::parse_request(&der) {
        Ok(r) => r,
        Err(e) if claims_ours => return Decision::Deny(format!("the request cannot be verified: {e}")),
        Err(_) => return Decision::Ignore,
    };
    if !r.common_names.iter().any(|c| c.starts_with(x509::COMMON_NAME_PREFIX)) {
        return Decision::Ignore;
    }
    let node = r.common_names[0].trim_start_matches(x509::COMMON_NAME_PREFIX);
    if r.common_names.len() != 1 || !valid_node_name(node) {
        return Decision::Deny(format!("the subject must hold one CN {}<node name>", x509::COMMON_NAME_PREFIX));
    }
    if r.organizations != [x509::ORGANIZATION] || r.other_subject != 0 {
        return Decision::Deny(format!(
            "the subject must be exactly O={}, CN={}",
            x509::ORGANIZATION,
            r.common_names[0]
        ));
    }
    if !r.attributes.is_empty() {
        return Decision::Deny("the request may not ask for extensions (no subject alternative names)".into());
    }
    if let Some(requester) = csr.spec.username.as_deref().and_then(|u| u.strip_prefix("system:node:")) {
        if requester != node {
            return Decision::Deny(format!("node {requester} asked for the identity of node {node}"));
        }
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if !usages.iter().any(|u| u == "client auth") || usages.iter().any(|u| !ALLOWED_USAGES.contains(&u.as_str())) {
        return Decision::Deny(format!("usages must include client auth and stay within {ALLOWED_USAGES:?}"));
    }
    Decision::Approve
}

fn contains_multus_cn(der: &[u8]) -> bool {
    der.windows(x509::COMMON_NAME_PREFIX.len()).any(|w| w == x509::COMMON_NAME_PREFIX.as_bytes())
}

/// `csr` with the decision's condition added (what is PUT to `approval`).
pub fn with_condition(mut csr: CertificateSigningRequest, approve: bool, message: &str) -> CertificateSigningRequest {
    let condition = CertificateSigningRequestCondition {
        type_: if approve { "Approved" } else { "Denied" }.into(),
        status: "True".into(),
        reason: Some(if approve { "AutoApproved" } else { "AutoDenied" }.into()),
        message: Some(message.into()),
        last_update_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::chrono::Utc::now())),
        ..Default::default()
    };
    let status = csr.status.get_or_insert_with(Default::default);
    status.conditions.get_or_insert_with(Vec::new).push(condition);
    csr
}

/// Watches every CertificateSigningRequest and decides each as it appears; runs until the watch
/// stream ends.
pub async fn run(client: kube::Client) -> Result<(), Error> {
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let csr = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => c,
            Ok(_) => continue,
            Err(e) => {
                crate::logging::error(&format!("watching CertificateSigningRequests: {e}"));
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let name = csr.metadata.name.clone().unwrap_or_default();
        let (approve, message) = match decide(&csr) {
            Decision::Ignore => continue,
            Decision::Approve => (true, "multus per-node certificate: subject and usages match".to_string()),
            Decision::Deny(why) => (false, why),
        };
        let body = serde_json::to_vec(&with_condition(csr, approve, &message))
            .map_err(|e| Error::Malformed(format!("CertificateSigningRequest {name}: {e}")))?;
        match api.replace_subresource("approval", &name, &PostParams::default(), body).await {
            Ok(_) => crate::logging::log(
                crate::logging::Level::Verbose,
                &format!("{} CertificateSigningRequest {name}: {message}", if approve { "approved" } else { "denied" }),
            ),
            Err(e) => crate::logging::error(&format!("deciding CertificateSigningRequest {name}: {e}")),
        }
    }
    Ok(())
}

/// `cert-approver`'s command line (Go `flag` style): `-kubeconfig <path>` (default $KUBECONFIG,
/// else the in-cluster settings), `-version`. Runs until SIGTERM; exit 1 when the API server
/// cannot be used, 2 on a bad command line.
pub fn main(argv: &[String]) -> u8 {
    if crate::build_info::wants_version(argv) {
        println!("{}", crate::build_info::version_line("cert-approver"));
        return 0;
    }
    let flags = match crate::golang::go_flags(&argv[1..], &["kubeconfig"]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cert-approver: {e}\nusage: cert-approver [-kubeconfig PATH] [-version]");
            return 2;
        }
    };
    crate::logging::init_with("", "verbose", true, &Default::default());
    let kubeconfig = flags.get("kubeconfig").cloned().unwrap_or_default();
    let source = super::client::daemon_source(&kubeconfig, |k| std::env::var(k).ok());
    if source == super::client::Source::None {
        eprintln!("cert-approver: no Kubernetes API server: give -kubeconfig, or run in a cluster");
        return 1;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cert-approver: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async {
        let client = super::client::connect(&source)
            .await?
            .ok_or_else(|| Error::Config("no Kubernetes API server configured".into()))?;
        tokio::select! {
            r = run(client) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = sigterm() => Ok(()),
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cert-approver: {e}");
            1
        }
    }
}

pub(crate) async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

    fn csr(request_der: &[u8], usages: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(x509::pem("CERTIFICATE REQUEST", request_der).into_bytes()),
                signer_name: SIGNER.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A request like `node_request`, but with the subject and attributes given.
    fn custom(subject: &[(&[u8], &str)], attributes: &[u8]) -> Vec<u8> {
        let key = x509::new_key().unwrap();
        let info = x509::seq(&[
            &x509::integer(&[0]),
            &x509::name(subject),
            &x509::public_key_info(&key).unwrap(),
            &x509::tlv(0xa0, attributes),
        ]);
        let sig = x509::sign(&key, &info).unwrap();
        x509::seq(&[&info, &x509::seq(&[&x509::tlv(0x06, x509::oid::ECDSA_SHA256)]), &x509::bit_string(&sig)])
    }

    const OK_USAGES: &[&str] = &["digital signature", "client auth"];

    #[test]
    fn upstreams_request_is_approved() {
        let der = x509::node_request("worker-1.example", &x509::new_key().unwrap()).unwrap();
        assert_eq!(decide(&csr(&der, OK_USAGES)), Decision::Approve);
        assert_eq!(decide(&csr(&der, &["digital signature", "key encipherment", "client auth"])), Decision::Approve);
    }

    #[test]
    fn rules_deny_what_claims_a_multus_identity_without_matching() {
        let (o, cn) = (x509::oid::ORGANIZATION, x509::oid::COMMON_NAME);
        let deny = |d: Decision| matches!(d, Decision::Deny(_));
        assert!(deny(decide(&csr(&custom(&[(o, "system:masters"), (cn, "system:multus:n1")], &[]), OK_USAGES))));
        assert!(deny(decide(&csr(&custom(&[(o, "system:multus"), (cn, "system:multus:N_1")], &[]), OK_USAGES))));
        assert!(deny(decide(&csr(
            &custom(&[(o, "system:multus"), (cn, "system:multus:n1"), (cn, "system:multus:n2")], &[]),
            OK_USAGES
        ))));
        let san_request =
            x509::seq(&[&x509::tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e]), &x509::set(&[])]);
        assert!(deny(decide(&csr(
            &custom(&[(o, "system:multus"), (cn, "system:multus:n1")], &san_request),
            OK_USAGES
        ))));
        let good = x509::node_request("n1", &x509::new_key().unwrap()).unwrap();
        assert!(deny(decide(&csr(&good, &["digital signature"]))), "no client auth");
        assert!(deny(decide(&csr(&good, &["client auth", "server auth"]))), "server auth");
        // A node asks only for its own identity.
        let mut from_node = csr(&good, OK_USAGES);
        from_node.spec.username = Some("system:node:n2".into());
        assert!(deny(decide(&from_node)), "n2 asking for n1");
        from_node.spec.username = Some("system:node:n1".into());
        assert_eq!(decide(&from_node), Decision::Approve);
        // A broken signature on a multus name is denied, not ignored.
        let mut forged = good.clone();
        let at = forged.len() - 5;
        forged[at] ^= 1;
        assert!(deny(decide(&csr(&forged, OK_USAGES))));
    }

    #[test]
    fn other_requests_and_decided_ones_are_left_alone() {
        let (o, cn) = (x509::oid::ORGANIZATION, x509::oid::COMMON_NAME);
        let kubelet = custom(&[(o, "system:nodes"), (cn, "system:node:n1")], &[]);
        assert_eq!(decide(&csr(&kubelet, OK_USAGES)), Decision::Ignore);
        let good = x509::node_request("n1", &x509::new_key().unwrap()).unwrap();
        let mut other_signer = csr(&good, OK_USAGES);
        other_signer.spec.signer_name = "kubernetes.io/kubelet-serving".into();
        assert_eq!(decide(&other_signer), Decision::Ignore);
        let approved = with_condition(csr(&good, OK_USAGES), true, "m");
        assert_eq!(decide(&approved), Decision::Ignore);
        let v = serde_json::to_value(&approved).unwrap();
        assert_eq!(v["status"]["conditions"][0]["type"], "Approved");
        assert_eq!(v["status"]["conditions"][0]["reason"], "AutoApproved");
        assert!(valid_node_name("a.b-c") && !valid_node_name("-a") && !valid_node_name("A") && !valid_node_name(""));
    }
}
