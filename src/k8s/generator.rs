//! `kubeconfig_generator` (a name of the multi-call binaries, see `crate::multicall`): the per-node certificate for the thin plugin, as upstream's. With the
//! bootstrap kubeconfig's credentials it gets a client certificate for `MULTUS_NODE_NAME` (see
//! `multus::k8s::pernode`), keeps it in `-certdir` as `multus-client-current.pem`, writes a
//! kubeconfig (`-kubeconfig`) that points the plugin at the same API server with that certificate,
//! and stays running to renew it before it expires.
//!
//! Flags (Go `flag` style, upstream's names and defaults): `-certdir` (/tmp), `-bootstrap-config`
//! (/tmp/kubeconfig), `-kubeconfig` (/run/multus/kubeconfig), `-cert-duration` (10m), `-version`.

use super::{client, pernode, x509};
use std::path::{Path, PathBuf};

fn fail(code: u8, m: &str) -> u8 {
    eprintln!("kubeconfig_generator: {m}");
    code
}

/// The kubeconfig the thin plugin reads: the bootstrap server and CA, the per-node pair (pure).
pub fn kubeconfig(server: &str, ca_pem: &str, pair_file: &Path) -> String {
    use base64::Engine as _;
    let ca = if ca_pem.is_empty() {
        String::new()
    } else {
        format!("    certificate-authority-data: {}\n", base64::engine::general_purpose::STANDARD.encode(ca_pem))
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n{ca}\
         users:\n- name: multus\n  user:\n    client-certificate: {p}\n    client-key: {p}\n\
         contexts:\n- name: multus-context\n  context:\n    cluster: local\n    user: multus\n\
         current-context: multus-context\n",
        p = pair_file.display()
    )
}

/// `kubeconfig_generator`'s command line (see the module doc).
pub fn main(argv: &[String]) -> u8 {
    if crate::build_info::wants_version(argv) {
        println!("{}", crate::build_info::version_line("kubeconfig_generator"));
        return 0;
    }
    let flags =
        match crate::golang::go_flags(&argv[1..], &["certdir", "bootstrap-config", "kubeconfig", "cert-duration"]) {
            Ok(f) => f,
            Err(e) => return fail(2, &e),
        };
    let get = |k: &str, d: &str| flags.get(k).cloned().unwrap_or_else(|| d.to_string());
    let (cert_dir, bootstrap, out) = (
        get("certdir", "/tmp"),
        PathBuf::from(get("bootstrap-config", "/tmp/kubeconfig")),
        PathBuf::from(get("kubeconfig", "/run/multus/kubeconfig")),
    );
    let node = std::env::var("MULTUS_NODE_NAME").unwrap_or_default();
    let settings = match pernode::settings(&node, &cert_dir, &get("cert-duration", "10m")) {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    crate::logging::init_with("", "verbose", true, &Default::default());
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
    };
    let result: Result<(), String> = rt.block_on(async {
        let config = client::config(&client::Source::Kubeconfig(bootstrap.clone()))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no bootstrap kubeconfig")?;
        let boot = super::transport::client(&config).map_err(|e| e.to_string())?;
        pernode::start(boot, settings.clone(), Default::default()).await.map_err(|e| e.to_string())?;
        let ca: String = config.root_cert.iter().flatten().map(|der| x509::pem("CERTIFICATE", der)).collect();
        let text = kubeconfig(&config.cluster_url.to_string(), &ca, &settings.cert_dir.join(pernode::CURRENT_FILE));
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &out))
            .map_err(|e| format!("writing {}: {e}", out.display()))?;
        eprintln!(
            "kubeconfig_generator: wrote {} for node {node}; renewing the certificate in {cert_dir}",
            out.display()
        );
        // The renewal task runs on this runtime until SIGTERM.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    });
    match result {
        Ok(()) => 0,
        Err(e) => fail(1, &e),
    }
}
