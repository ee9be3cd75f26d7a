//! Where the API-server client's settings come from, in upstream's order: the multus config's
//! `kubeconfig` key (a file), else in-cluster settings when `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT` are set, else no client (only static delegates apply).

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::Error;

/// How long one connection attempt to the API server may take. A refused connection fails at
/// once; this bounds a black-holed one so the pod lookup's retry budget stays meaningful.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one API request may wait for its answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a watch may stay silent before its connection counts as dead: kube's own default,
/// above the API server's watch timeout (kube-runtime asks for 290 s), so a quiet watch on an idle
/// node is never cut and re-listed (with READ_TIMEOUT it was, every 10 s).
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(295);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Kubeconfig(PathBuf),
    InCluster,
    None,
}

/// Picks the source from the config's `kubeconfig` value and the environment (pure).
pub fn source(kubeconfig: &str, env: impl Fn(&str) -> Option<String>) -> Source {
    if !kubeconfig.is_empty() {
        return Source::Kubeconfig(PathBuf::from(kubeconfig));
    }
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set("KUBERNETES_SERVICE_HOST") && set("KUBERNETES_SERVICE_PORT") { Source::InCluster } else { Source::None }
}

/// The daemon's source: its config's `kubeconfig` key, else `KUBECONFIG` (as kube-rs and kubectl
/// do, so the daemon also runs outside a cluster), else in-cluster settings.
pub fn daemon_source(kubeconfig: &str, env: impl Fn(&str) -> Option<String>) -> Source {
    let from_env = env("KUBECONFIG").filter(|v| !v.is_empty()).unwrap_or_default();
    source(if kubeconfig.is_empty() { &from_env } else { kubeconfig }, env)
}

/// A client for `source` (must run inside a tokio runtime); `Ok(None)` for [`Source::None`].
pub async fn connect(source: &Source) -> Result<Option<kube::Client>, Error> {
    let Some(config) = config(source).await? else { return Ok(None) };
    super::transport::client(&config).map(Some)
}

/// The daemon's two clients for `source`: one for requests (answers within [`READ_TIMEOUT`]) and
/// one for its watches (silent for up to [`WATCH_READ_TIMEOUT`]); `Ok(None)` for [`Source::None`].
pub async fn connect_with_watch(source: &Source) -> Result<Option<(kube::Client, kube::Client)>, Error> {
    let Some(config) = config(source).await? else { return Ok(None) };
    let mut watch = config.clone();
    watch.read_timeout = Some(WATCH_READ_TIMEOUT);
    Ok(Some((super::transport::client(&config)?, super::transport::client(&watch)?)))
}

/// The client settings for `source`; `Ok(None)` for [`Source::None`].
pub async fn config(source: &Source) -> Result<Option<kube::Config>, Error> {
    let mut config = match source {
        Source::None => return Ok(None),
        Source::Kubeconfig(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("cannot read kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("invalid kubeconfig {}: {e}", path.display())))?
        }
        Source::InCluster => kube::Config::incluster()
            .map_err(|e| Error::Config(format!("cannot use the in-cluster Kubernetes settings: {e}")))?,
    };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_key_wins_then_in_cluster_then_none() {
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        assert_eq!(source("/etc/kc", env), Source::Kubeconfig("/etc/kc".into()));
        assert_eq!(source("", env), Source::InCluster);
        assert_eq!(source("", |_| None), Source::None);
        assert_eq!(source("", |k| (k == "KUBERNETES_SERVICE_HOST").then(|| "h".to_string())), Source::None);
        let kc_env = |k: &str| (k == "KUBECONFIG").then(|| "/home/k".to_string());
        assert_eq!(daemon_source("", kc_env), Source::Kubeconfig("/home/k".into()));
        assert_eq!(daemon_source("/etc/kc", kc_env), Source::Kubeconfig("/etc/kc".into()));
    }
}
