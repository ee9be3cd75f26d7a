//! How a command reaches a registry: the flags every registry-facing command shares
//! ([`AccessArgs`], flattened into `publish`, `verify` and `release`) and what they resolve to
//! ([`Access`]: the scheme rule, the trusted CAs or pinned certificate, and where credentials come
//! from: the flags or MULTUS_REGISTRY_*, else the docker config for the registry's host
//! (`dockerconfig`: `docker login`'s file, credential helpers), else anonymous).

use std::path::PathBuf;

use anyhow::bail;

use super::auth::Creds;
use super::dockerconfig;
use super::{Target, http::Ureq};

/// The registry flags, declared once.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AccessArgs {
    /// Plain HTTP; only for a loopback registry (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of the CA(s) to trust for the registry's TLS certificate (instead of the web roots),
    /// or of the registry's own self-signed certificate (pinned).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// User name (or MULTUS_REGISTRY_USERNAME) for Basic auth or the token endpoint; without one,
    /// the docker config (`$DOCKER_CONFIG` or ~/.docker/config.json: auths, credHelpers, credsStore).
    #[arg(long)]
    pub username: Option<String>,
    /// Password (or MULTUS_REGISTRY_PASSWORD; prefer the variable: arguments are visible in ps).
    #[arg(long)]
    pub password: Option<String>,
}

/// [`AccessArgs`] resolved and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub insecure: bool,
    pub ca: Option<PathBuf>,
    /// From the flags or MULTUS_REGISTRY_*.
    pub creds: Option<Creds>,
    /// The docker config consulted when `creds` is `None`.
    pub docker_config: Option<PathBuf>,
}

impl AccessArgs {
    /// Credentials from the flags, else MULTUS_REGISTRY_USERNAME/_PASSWORD (both or neither);
    /// `--insecure` with `--ca` is refused.
    pub fn resolve(self) -> anyhow::Result<Access> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    fn resolve_with(self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Access> {
        let env = &env as &dyn Fn(&str) -> Option<String>;
        if self.insecure && self.ca.is_some() {
            bail!("--insecure (plain HTTP) and --ca (TLS) contradict each other");
        }
        let or_env = |arg: Option<String>, var: &str| arg.or_else(|| env(var).filter(|v| !v.is_empty()));
        let creds = match (
            or_env(self.username, "MULTUS_REGISTRY_USERNAME"),
            or_env(self.password, "MULTUS_REGISTRY_PASSWORD"),
        ) {
            (Some(username), Some(password)) => Some(Creds { username, password }),
            (None, None) => None,
            _ => bail!("give both a user name and a password (--username/--password or MULTUS_REGISTRY_*), or neither"),
        };
        let docker_config = dockerconfig::config_path(&env);
        Ok(Access { insecure: self.insecure, ca: self.ca, creds, docker_config })
    }
}

impl Access {
    /// The registry `HOST[:PORT]/REPO` under this access's scheme rule.
    pub fn target(&self, name: &str) -> anyhow::Result<Target> {
        Target::parse(name, self.insecure)
    }

    /// The credentials for `host`: the explicit ones, else the docker config's, else none.
    pub fn creds_for(&self, host: &str) -> anyhow::Result<Option<Creds>> {
        self.creds_with(host, &dockerconfig::PathHelper)
    }

    fn creds_with(&self, host: &str, helper: &dyn dockerconfig::Helper) -> anyhow::Result<Option<Creds>> {
        if self.creds.is_some() {
            return Ok(self.creds.clone());
        }
        match &self.docker_config {
            Some(path) => dockerconfig::credentials(path, host, helper),
            None => Ok(None),
        }
    }

    /// The HTTP transport trusting this access's CAs.
    pub fn transport(&self) -> anyhow::Result<Ureq> {
        Ureq::new(self.ca.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_in_pairs_from_flags_or_environment() {
        let env = |k: &str| (k == "MULTUS_REGISTRY_PASSWORD").then(|| "pw".to_string());
        let a = AccessArgs { username: Some("u".into()), ..Default::default() }.resolve_with(env).unwrap();
        assert_eq!(a.creds, Some(Creds { username: "u".into(), password: "pw".into() }));
        assert!(AccessArgs::default().resolve_with(env).unwrap_err().to_string().contains("both"));
        assert_eq!(AccessArgs::default().resolve_with(|_| None).unwrap().creds, None);
        let both = AccessArgs { insecure: true, ca: Some("ca.pem".into()), ..Default::default() };
        assert!(both.resolve_with(|_| None).unwrap_err().to_string().contains("contradict"));
    }
}
