//! The multus plugin config read from stdin (upstream `types.NetConf`): every key, upstream's
//! defaults, and validation with errors that name the key. Pure: bytes in, struct out.
//!
//! Keys are matched as Go's `encoding/json` matches struct fields, which upstream decodes this
//! document with: ignoring ASCII case, the last matching key winning, `null` leaving the default
//! (`golang::field`). So `"readinessIndicatorFile"`, `"CNIDir"` or `"BinDir"` work as upstream.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cni::error::Error;
use crate::golang::Fields;

pub const DEFAULT_CONF_DIR: &str = "/etc/cni/multus/net.d";
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/multus";
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";

/// The runtime capabilities multus passes on (upstream drops every other key of `runtimeConfig`).
pub const RUNTIME_CONFIG_KEYS: &[&str] =
    &["portMappings", "bandwidth", "ips", "mac", "infinibandGUID", "deviceID", "CNIDeviceInfoFile"];

pub use crate::logging::LogOptions;

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub conf_dir: PathBuf,
    pub cni_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Inline delegate configs; the first is the master.
    pub delegates: Vec<Value>,
    pub cluster_network: String,
    pub default_networks: Vec<String>,
    pub kubeconfig: String,
    pub log_file: String,
    pub log_level: String,
    pub log_to_stderr: bool,
    pub log_options: LogOptions,
    /// The runtime's `runtimeConfig`, reduced to [`RUNTIME_CONFIG_KEYS`].
    pub runtime_config: Map<String, Value>,
    pub readiness_indicator_file: String,
    pub namespace_isolation: bool,
    pub global_namespaces: Vec<String>,
    pub system_namespaces: Vec<String>,
    pub multus_namespace: String,
    pub retry_delete_on_error: bool,
    pub auxiliary_cni_chain_name: String,
    /// Where device plugins leave device-info files and multus copies them for delegates
    /// (extension key `deviceInfoDir`; upstream hard-codes the default).
    pub device_info_dir: PathBuf,
    /// How long one delegate call may run before it is killed with its process group
    /// (`delegateTimeoutSeconds`, ours; default 120 s).
    pub delegate_timeout: Duration,
    /// How long the rollback DEL of a delegate whose ADD timed out may run
    /// (`rollbackTimeoutSeconds`, ours; default 10 s): a hung plugin is not waited for twice.
    pub rollback_timeout: Duration,
    /// The whole document, for keys this struct does not model.
    pub raw: Map<String, Value>,
}

/// Default of `delegateTimeoutSeconds`.
pub const DEFAULT_DELEGATE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of `rollbackTimeoutSeconds`.
pub const DEFAULT_ROLLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest timeout either key accepts (one hour).
pub const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// What every error about this document starts with (upstream's wording).
const WHAT: &str = "failed to load netconf";

fn seconds(f: &Fields, key: &str, default: Duration) -> Result<Duration, Error> {
    match f.get(key) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TIMEOUT_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
            _ => Err(f.invalid(key, &format!("a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}")).into()),
        },
    }
}

/// A `logOptions` count: a non-negative integer.
fn count(f: &Fields, key: &str, default: u64) -> Result<u64, Error> {
    match f.get(key) {
        None => Ok(default),
        Some(n) => n.as_u64().ok_or_else(|| f.invalid(key, "a non-negative integer").into()),
    }
}

impl NetConf {
    /// A multus config to run pods with: [`NetConf::parse_settings`] plus the rule that it names
    /// at least one delegate or a cluster network.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, Error> {
        let conf = Self::parse_settings(bytes)?;
        if conf.delegates.is_empty() && conf.cluster_network.is_empty() {
            return Err(Error::InvalidConfig(
                "failed to load netconf: at least one delegate or a clusterNetwork must be specified".into(),
            ));
        }
        Ok(conf)
    }

    /// Every key with upstream's defaults, without requiring delegates: the settings a single
    /// delegate runs with (the daemon's `/delegate` API reads them from its own config).
    pub fn parse_settings(bytes: &[u8]) -> Result<NetConf, Error> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Decoding(format!("failed to load netconf: {e}")))?;
        let Value::Object(raw) = value else {
            return Err(Error::Decoding("failed to load netconf: not a JSON object".into()));
        };
        Self::settings_from(&raw)
    }

    /// [`NetConf::parse_settings`] of an already decoded object (the daemon decodes its config once).
    pub fn settings_from(raw: &Map<String, Value>) -> Result<NetConf, Error> {
        let f = Fields::new(raw, WHAT);
        let delegates = match f.get("delegates") {
            None => vec![],
            Some(Value::Array(a)) => {
                for (i, d) in a.iter().enumerate() {
                    if !d.is_object() {
                        return Err(f.invalid(&format!("delegates[{i}]"), "a JSON object").into());
                    }
                }
                a.clone()
            }
            Some(_) => return Err(f.invalid("delegates", "a list of configs").into()),
        };
        let log_options = match f.object("logOptions")? {
            None => LogOptions::default(),
            Some(o) => {
                let (d, lo) = (LogOptions::default(), Fields::new(o, "failed to load netconf: logOptions"));
                LogOptions {
                    max_age_days: count(&lo, "maxAge", d.max_age_days)?,
                    max_size_mb: count(&lo, "maxSize", d.max_size_mb)?,
                    max_backups: count(&lo, "maxBackups", d.max_backups as u64)? as usize,
                    compress: lo.boolean_or("compress", d.compress)?,
                }
            }
        };
        let runtime_config = match f.object("runtimeConfig")? {
            None => Map::new(),
            Some(o) => o
                .iter()
                .filter(|(k, _)| RUNTIME_CONFIG_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        // globalNamespaces is a comma-separated string upstream; an empty one means ["default"].
        let global = f.string_or("globalNamespaces", "")?;
        let global_namespaces: Vec<String> =
            global.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        Ok(NetConf {
            cni_version: f.string_or("cniVersion", "")?,
            name: f.string_or("name", "")?,
            conf_dir: PathBuf::from(f.string_or("confDir", DEFAULT_CONF_DIR)?),
            cni_dir: PathBuf::from(f.string_or("cniDir", DEFAULT_CNI_DIR)?),
            bin_dir: PathBuf::from(f.string_or("binDir", DEFAULT_BIN_DIR)?),
            delegates,
            cluster_network: f.string_or("clusterNetwork", "")?,
            default_networks: f.strings("defaultNetworks")?.unwrap_or_default(),
            kubeconfig: f.string_or("kubeconfig", "")?,
            log_file: f.string_or("logFile", "")?,
            log_level: f.string_or("logLevel", "")?,
            log_to_stderr: f.boolean_or("logToStderr", true)?,
            log_options,
            runtime_config,
            readiness_indicator_file: f.string_or("readinessindicatorfile", "")?,
            namespace_isolation: f.boolean_or("namespaceIsolation", false)?,
            global_namespaces: if global_namespaces.is_empty() { vec!["default".into()] } else { global_namespaces },
            system_namespaces: f.strings("systemNamespaces")?.unwrap_or_else(|| vec!["kube-system".into()]),
            multus_namespace: f.string_or("multusNamespace", "kube-system")?,
            retry_delete_on_error: f.boolean_or("retryDeleteOnError", false)?,
            auxiliary_cni_chain_name: f.string_or("auxiliaryCNIChainName", "")?,
            device_info_dir: PathBuf::from(f.string_or("deviceInfoDir", super::devinfo::BASE_DIR)?),
            delegate_timeout: seconds(&f, "delegateTimeoutSeconds", DEFAULT_DELEGATE_TIMEOUT)?,
            rollback_timeout: seconds(&f, "rollbackTimeoutSeconds", DEFAULT_ROLLBACK_TIMEOUT)?,
            raw: raw.clone(),
        })
    }

    /// Configures the process's log from this config's `logFile`, `logLevel`, `logToStderr`
    /// and `logOptions`; the first call wins.
    pub fn init_logging(&self) {
        crate::logging::init_with(&self.log_file, &self.log_level, self.log_to_stderr, &self.log_options);
    }

    /// The search path for delegates: `binDir` first, then the runtime's CNI_PATH.
    pub fn plugin_path(&self, cni_path: &str) -> Vec<PathBuf> {
        let mut v = vec![self.bin_dir.clone()];
        v.extend(cni_path.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).filter(|p| p != &self.bin_dir));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","clusterNetwork":"/x/10-a.conflist"}"#).unwrap();
        assert_eq!(c.conf_dir, PathBuf::from("/etc/cni/multus/net.d"));
        assert_eq!(c.cni_dir, PathBuf::from("/var/lib/cni/multus"));
        assert_eq!(c.bin_dir, PathBuf::from("/opt/cni/bin"));
        assert_eq!(c.global_namespaces, vec!["default"]);
        assert_eq!(c.system_namespaces, vec!["kube-system"]);
        assert_eq!(c.multus_namespace, "kube-system");
        assert!(c.log_to_stderr && !c.namespace_isolation && !c.retry_delete_on_error);
        assert_eq!(c.log_options, LogOptions::default());
        assert_eq!((c.delegate_timeout, c.rollback_timeout), (DEFAULT_DELEGATE_TIMEOUT, DEFAULT_ROLLBACK_TIMEOUT));
    }

    /// Upstream decodes this document with Go's `encoding/json`: keys match their field ignoring
    /// case, the last one wins, `null` is unset.
    #[test]
    fn keys_match_as_go_decodes_them() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"m","type":"multus","clusterNetwork":"/x.conflist",
            "readinessIndicatorFile":"/run/ready","CNIDir":"/c","BinDir":"/b","ConfDir":"/d",
            "LogLevel":"debug","logToStderr":false,"LOGTOSTDERR":true,"namespaceisolation":true,"kubeconfig":null}"#,
        )
        .unwrap();
        assert_eq!(c.readiness_indicator_file, "/run/ready");
        assert_eq!((c.cni_dir, c.bin_dir, c.conf_dir), (PathBuf::from("/c"), PathBuf::from("/b"), PathBuf::from("/d")));
        assert_eq!(c.log_level, "debug");
        assert!(c.log_to_stderr, "the last matching key wins");
        assert!(c.namespace_isolation);
        assert_eq!(c.kubeconfig, "");
        let c = NetConf::parse(br#"{"Delegates":[{"type":"bridge"}],"LogOptions":{"MaxSize":7}}"#).unwrap();
        assert_eq!((c.delegates.len(), c.log_options.max_size_mb), (1, 7));
    }

    #[test]
    fn timeouts() {
        let c = NetConf::parse_settings(br#"{"delegateTimeoutSeconds":30,"rollbackTimeoutSeconds":2}"#).unwrap();
        assert_eq!((c.delegate_timeout, c.rollback_timeout), (Duration::from_secs(30), Duration::from_secs(2)));
        for bad in ["0", "3601", "-1", "1.5", "\"10\""] {
            let e = NetConf::parse_settings(format!(r#"{{"delegateTimeoutSeconds":{bad}}}"#).as_bytes()).unwrap_err();
            assert!(e.to_string().contains("delegateTimeoutSeconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn values_and_validation() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.3.1","name":"m","type":"multus","delegates":[{"type":"bridge"}],
            "globalNamespaces":" a, b ,","systemNamespaces":["sys"],"logOptions":{"maxSize":1,"compress":false},
            "runtimeConfig":{"portMappings":[{"hostPort":1}],"somethingElse":1}}"#,
        )
        .unwrap();
        assert_eq!(c.global_namespaces, vec!["a", "b"]);
        assert_eq!(c.system_namespaces, vec!["sys"]);
        assert_eq!(c.log_options, LogOptions { max_size_mb: 1, compress: false, ..LogOptions::default() });
        assert_eq!(c.runtime_config.keys().collect::<Vec<_>>(), ["portMappings"]);
        assert_eq!(
            c.plugin_path("/usr/lib/cni:/opt/cni/bin"),
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );

        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","type":"multus"}"#).unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("at least one delegate"), "{e}");
        let e = NetConf::parse(br#"{"type":"multus","delegates":{"type":"bridge"}}"#).unwrap_err();
        assert_eq!((e.code(), e.to_string().contains("\"delegates\"")), (6, true));
        assert!(NetConf::parse(br#"{"clusterNetwork":7}"#).unwrap_err().to_string().contains("clusterNetwork"));
        let settings = NetConf::parse_settings(br#"{"binDir":"/b","socketDir":"/s"}"#).unwrap();
        assert_eq!((settings.bin_dir, settings.cni_dir), (PathBuf::from("/b"), PathBuf::from(DEFAULT_CNI_DIR)));
        assert_eq!(NetConf::parse(b"{").unwrap_err().code(), 6);
    }
}
