//! How a command reaches a registry: the flags every registry-facing command shares
//! ([`AccessArgs`], flattened into `publish`, `verify` and `release`) and what they resolve to
//! ([`Access`]: the scheme rule, the trusted CAs, the credentials from the flags or the
//! environment).

use std::path::PathBuf;

use anyhow::bail;

use super::auth::Creds;
use super::{Target, http::Ureq};

/// The registry flags, declared once.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AccessArgs {
    /// Plain HTTP; only for a loopback registry (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of the CA(s) to trust for the registry's TLS certificate (instead of the web roots).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// User name (or MULTUS_REGISTRY_USERNAME) for Basic auth or the token endpoint.
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
    pub creds: Option<Creds>,
}

impl AccessArgs {
    /// Credentials from the flags, else MULTUS_REGISTRY_USERNAME/_PASSWORD (both or neither);
    /// `--insecure` with `--ca` is refused.
    pub fn resolve(self) -> anyhow::Result<Access> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    fn resolve_with(self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Access> {
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
        Ok(Access { insecure: self.insecure, ca: self.ca, creds })
    }
}

impl Access {
    /// The registry `HOST[:PORT]/REPO` under this access's scheme rule.
    pub fn target(&self, name: &str) -> anyhow::Result<Target> {
        Target::parse(name, self.insecure)
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
