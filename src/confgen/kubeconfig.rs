//! The kubeconfig thin_entrypoint writes for the `multus` plugin
//! (`<cni-conf-dir>/multus.d/multus.kubeconfig`): the API server from the in-cluster service
//! environment, the pod's service-account token inline and its CA (or
//! `insecure-skip-tls-verify`), in upstream's template layout.
//!
//! Fixes over v4.2.1: the server URL brackets the host only when it is an IPv6 address
//! (v4.2.1 wrote `https://[10.96.0.1]:443`; v4.2.3 switched to `net.JoinHostPort`), the token is
//! trimmed of surrounding whitespace and escaped for its YAML double-quoted string, and a missing
//! `KUBERNETES_SERVICE_HOST`/`_PORT` is an error instead of a URL like `https://[]:`.

use base64::Engine;

use super::Error;

/// Where Kubernetes mounts the pod's service-account token and CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const TOKEN_FILE: &str = "token";
pub const CA_FILE: &str = "ca.crt";

/// How the plugin verifies the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `--skip-tls-verify`.
    SkipVerify,
    /// The CA bundle (PEM bytes) written as `certificate-authority-data`.
    Ca(Vec<u8>),
}

/// `net.JoinHostPort`: IPv6 literals (anything with a colon) in brackets, others bare.
pub fn join_host_port(host: &str, port: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The API server URL from `KUBERNETES_SERVICE_PROTOCOL` (default `https`),
/// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, looked up through `env`.
pub fn server_url(env: &dyn Fn(&str) -> Option<String>) -> Result<String, Error> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let protocol = get("KUBERNETES_SERVICE_PROTOCOL").unwrap_or_else(|| "https".into());
    let host = get("KUBERNETES_SERVICE_HOST")
        .ok_or_else(|| Error::Invalid("KUBERNETES_SERVICE_HOST is not set: not running in a pod?".into()))?;
    let port = get("KUBERNETES_SERVICE_PORT")
        .ok_or_else(|| Error::Invalid("KUBERNETES_SERVICE_PORT is not set: not running in a pod?".into()))?;
    Ok(format!("{protocol}://{}", join_host_port(&host, &port)))
}

/// The token as the content of a YAML double-quoted scalar.
fn yaml_quoted(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for c in token.trim().chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The whole kubeconfig document.
pub fn render(server: &str, tls: &Tls, token: &str) -> String {
    let tls = match tls {
        Tls::SkipVerify => "insecure-skip-tls-verify: true".to_string(),
        Tls::Ca(pem) => {
            format!("certificate-authority-data: {}", base64::engine::general_purpose::STANDARD.encode(pem))
        }
    };
    format!(
        "# Kubeconfig file for Multus CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    {tls}
users:
- name: multus
  user:
    token: \"{}\"
contexts:
- name: multus-context
  context:
    cluster: local
    user: multus
current-context: multus-context
",
        yaml_quoted(token)
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn server_url_brackets_only_ipv6() {
        let v4 = env(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "443")]);
        assert_eq!(server_url(&v4).unwrap(), "https://10.96.0.1:443");
        let v6 = env(&[("KUBERNETES_SERVICE_HOST", "fd00:10:96::1"), ("KUBERNETES_SERVICE_PORT", "6443")]);
        assert_eq!(server_url(&v6).unwrap(), "https://[fd00:10:96::1]:6443");
        let bracketed = env(&[("KUBERNETES_SERVICE_HOST", "[::1]"), ("KUBERNETES_SERVICE_PORT", "1")]);
        assert_eq!(server_url(&bracketed).unwrap(), "https://[::1]:1");
        let http = env(&[
            ("KUBERNETES_SERVICE_PROTOCOL", "http"),
            ("KUBERNETES_SERVICE_HOST", "api.example"),
            ("KUBERNETES_SERVICE_PORT", "80"),
        ]);
        assert_eq!(server_url(&http).unwrap(), "http://api.example:80");
        assert!(server_url(&env(&[("KUBERNETES_SERVICE_PORT", "1")])).unwrap_err().to_string().contains("HOST"));
        assert!(server_url(&env(&[("KUBERNETES_SERVICE_HOST", "h")])).unwrap_err().to_string().contains("PORT"));
    }

    #[test]
    fn golden_kubeconfig_with_ca() {
        let doc =
            render("https://10.96.0.1:443", &Tls::Ca(b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec()), "tok.en-1\n");
        assert_eq!(
            doc,
            "# Kubeconfig file for Multus CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://10.96.0.1:443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIK
users:
- name: multus
  user:
    token: \"tok.en-1\"
contexts:
- name: multus-context
  context:
    cluster: local
    user: multus
current-context: multus-context
"
        );
    }

    #[test]
    fn the_document_parses_as_yaml_with_the_values_intact() {
        let doc = render("https://[fd00::1]:443", &Tls::SkipVerify, "a\"b\\c");
        let v: serde_yaml::Value = serde_yaml::from_str(&doc).unwrap();
        assert_eq!(v["clusters"][0]["cluster"]["server"].as_str(), Some("https://[fd00::1]:443"));
        assert_eq!(v["clusters"][0]["cluster"]["insecure-skip-tls-verify"].as_bool(), Some(true));
        assert_eq!(v["users"][0]["user"]["token"].as_str(), Some("a\"b\\c"));
        assert_eq!(v["current-context"].as_str(), Some("multus-context"));
    }
}
