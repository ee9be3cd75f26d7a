//! thin_entrypoint, the thin DaemonSet's main process (upstream `cmd/thin_entrypoint/main.go`):
//! its flags (upstream's long names; the hidden ones hidden), copying the `multus` binary onto
//! the host, the kubeconfig and the generated config (`kubeconfig`, `thin`), the watch loop and
//! the cleanup on exit. The binary adds only the signal flag and the exit code.
//!
//! Sequence: check the directories → copy `--multus-bin-file` to `<cni-bin-dir>/multus`
//! (atomic, `files::copy_atomic`) → either copy `--multus-conf-file` into the conf dir, or
//! (`auto`) write the kubeconfig and the generated config → watch → on SIGTERM/SIGINT, with
//! `--cleanup-config-on-exit`, delete what was generated or copied.
//!
//! Deviations from v4.2.1, each a fix:
//! * Errors exit non-zero with the message on stderr (upstream printed them and exited 0).
//! * The watch loop runs in `auto` mode unless `--skip-config-watch`, not only with
//!   `--cleanup-config-on-exit`: without it the service-account token in the kubeconfig was
//!   never refreshed and the plugin failed with `Unauthorized` once it expired (issue #852).
//!   Every second it rewrites the kubeconfig when the token or CA changed, re-selects the master
//!   and regenerates the config when the result differs from what it last wrote (or the file
//!   is gone). Failures inside the loop are logged and the previous files kept.
//! * At startup a missing (or still empty) master config is waited for (upstream exited); an
//!   unusable one is still an error.
//! * Writing `00-multus.conflist` removes a stale `00-multus.conf` and vice versa (it would
//!   shadow the new file: runtimes take the first name).
//! * `multus-bin-file` must exist only when it is copied; the CA file only without
//!   `--skip-tls-verify`.
//! * `-h/--help` exits 0 (clap); upstream exited 1.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{ArgAction, Parser};

use super::AUTO;
use super::Error;
use super::kubeconfig::{self, Tls};
use super::primary::{self, Rule};
use super::thin::{self, Generated, ThinOptions};
use crate::files::{Durability, copy_atomic, write_atomic};

/// Go's `strconv.ParseBool`, which pflag uses for `--flag=value`.
fn go_bool(s: &str) -> Result<bool, String> {
    crate::golang::parse_bool(s).ok_or_else(|| format!("invalid boolean {s:?}"))
}

/// The flags, named as upstream's pflag flags. Booleans take `--flag` or `--flag=false`.
#[derive(Debug, Clone, Parser)]
#[command(name = "thin_entrypoint", about = "Installs the thin multus plugin and writes its configuration")]
pub struct Args {
    /// CNI binary directory
    #[arg(long, default_value = "/host/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// CNI config directory
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// CNI version for multus CNI config (e.g. '0.3.1')
    #[arg(long, default_value = "")]
    pub cni_version: String,
    /// multus CNI config file
    #[arg(long, default_value = AUTO)]
    pub multus_conf_file: String,
    /// multus binary file path
    #[arg(long, default_value = "/usr/src/multus-cni/bin/multus")]
    pub multus_bin_file: PathBuf,
    /// multus specific CNI config directory (created; not written into the config)
    #[arg(long, default_value = "/host/etc/cni/multus/net.d")]
    pub multus_cni_conf_dir: PathBuf,
    /// skip multus binary file copy
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    pub skip_multus_binary_copy: bool,
    /// kubeconfig for multus (used only with --multus-conf-file=auto)
    #[arg(long, default_value = "/etc/cni/net.d/multus.d/multus.kubeconfig")]
    pub multus_kubeconfig_file_host: String,
    /// master CNI file in multus-autoconfig-dir
    #[arg(long, default_value = "")]
    pub multus_master_cni_file_name: String,
    /// namespace isolation
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    pub namespace_isolation: bool,
    /// global namespaces, comma separated (used only with --namespace-isolation=true)
    #[arg(long, default_value = "")]
    pub global_namespaces: String,
    /// multus autoconfig dir (used only with --multus-conf-file=auto)
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    pub multus_autoconfig_dir: PathBuf,
    /// log to stderr
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = go_bool)]
    pub multus_log_to_stderr: bool,
    /// multus log level
    #[arg(long, default_value = "")]
    pub multus_log_level: String,
    /// multus log file
    #[arg(long, default_value = "")]
    pub multus_log_file: String,
    /// override network name from master cni file (used only with --multus-conf-file=auto)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    pub override_network_name: bool,
    /// cleanup config file on exit
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    pub cleanup_config_on_exit: bool,
    /// skip config watch (kubeconfig refresh and regeneration)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    pub skip_config_watch: bool,
    /// rename master config file to invalidate (used only with --multus-conf-file=auto)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    pub rename_conf_file: bool,
    /// readiness indicator file (used only with --multus-conf-file=auto)
    #[arg(long, default_value = "")]
    pub readiness_indicator_file: String,
    /// adds binDir option to configuration (used only with --multus-conf-file=auto)
    #[arg(long, default_value = "")]
    pub additional_bin_dir: String,
    /// skip TLS verify
    #[arg(long, hide = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub skip_tls_verify: bool,
    /// force cni version to '--cni-version' (only for e2e-kind testing)
    #[arg(long, hide = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub force_cni_version: bool,
    /// where the service-account token and ca.crt are read (ours, for tests)
    #[arg(long, hide = true, default_value = kubeconfig::SERVICE_ACCOUNT_DIR)]
    pub service_account_dir: PathBuf,
}

impl Args {
    fn is_auto(&self) -> bool {
        self.multus_conf_file == AUTO
    }

    fn thin_options(&self) -> ThinOptions {
        ThinOptions {
            cni_version: self.cni_version.clone(),
            force_cni_version: self.force_cni_version,
            override_network_name: self.override_network_name,
            namespace_isolation: self.namespace_isolation,
            global_namespaces: self.global_namespaces.clone(),
            log_to_stderr: self.multus_log_to_stderr,
            log_level: self.multus_log_level.clone(),
            log_file: self.multus_log_file.clone(),
            additional_bin_dir: self.additional_bin_dir.clone(),
            readiness_indicator_file: self.readiness_indicator_file.clone(),
            kubeconfig: self.multus_kubeconfig_file_host.clone(),
        }
    }

    /// The kubeconfig file as the entrypoint writes it.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.cni_conf_dir.join("multus.d").join("multus.kubeconfig")
    }
}

fn say(msg: &str) {
    println!("{msg}");
}

fn warn(msg: &str) {
    eprintln!("{msg}");
}

fn must_exist(path: &Path, flag: &str) -> Result<(), Error> {
    std::fs::metadata(path).map(|_| ()).map_err(|e| Error::io("not found:", path, e).context(format!("--{flag}")))
}

fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            say(&format!("removed {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("failed to remove", path, e)),
    }
}

/// Sleeps up to `d`; returns true when `stop` was raised.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    stop.load(Ordering::SeqCst)
}

/// The generated files and what was last written to them.
struct Auto<'a> {
    args: &'a Args,
    thin: ThinOptions,
    server: String,
    kubeconfig: Option<String>,
    conf: Option<Generated>,
    /// The last problem reported, so the loop does not repeat it every second.
    last_problem: String,
}

impl<'a> Auto<'a> {
    fn new(args: &'a Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Auto<'a>, Error> {
        Ok(Auto {
            args,
            thin: args.thin_options(),
            server: kubeconfig::server_url(env)?,
            kubeconfig: None,
            conf: None,
            last_problem: String::new(),
        })
    }

    fn problem(&mut self, msg: String) {
        if msg != self.last_problem {
            warn(&msg);
            self.last_problem = msg;
        }
    }

    /// Writes the kubeconfig when its content changed or the file is gone.
    fn kubeconfig(&mut self) -> Result<(), Error> {
        let sa = &self.args.service_account_dir;
        let token_file = sa.join(kubeconfig::TOKEN_FILE);
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| Error::io("failed to read the service account token", &token_file, e))?;
        let tls = if self.args.skip_tls_verify {
            Tls::SkipVerify
        } else {
            let ca_file = sa.join(kubeconfig::CA_FILE);
            Tls::Ca(
                std::fs::read(&ca_file).map_err(|e| Error::io("failed to read the service account CA", &ca_file, e))?,
            )
        };
        let doc = kubeconfig::render(&self.server, &tls, &token);
        let path = self.args.kubeconfig_path();
        if self.kubeconfig.as_deref() == Some(&doc) && path.exists() {
            return Ok(());
        }
        for dir in [path.parent().expect("has a parent"), &self.args.multus_cni_conf_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("failed to create directory", dir, e))?;
        }
        write_atomic(&path, doc.as_bytes(), 0o600, 0o755, Durability::Sync)?;
        say(&format!("kubeconfig is created in {}", path.display()));
        self.kubeconfig = Some(doc);
        Ok(())
    }

    /// The master config's path, or `None` when there is none (yet).
    fn master(&self) -> Result<Option<PathBuf>, Error> {
        let dir = &self.args.multus_autoconfig_dir;
        if !self.args.multus_master_cni_file_name.is_empty() {
            let p = dir.join(&self.args.multus_master_cni_file_name);
            return Ok(p.exists().then_some(p));
        }
        Ok(primary::find(dir, Rule::Thin)?.map(|n| dir.join(n)))
    }

    /// Regenerates the config from the master; `Ok(false)` when there is no master.
    fn config(&mut self) -> Result<bool, Error> {
        let Some(master_path) = self.master()? else {
            return Ok(false);
        };
        let bytes = match std::fs::read(&master_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("failed to read the master CNI config", &master_path, e)),
        };
        // Caught between its creation and its first write: not a config yet.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let generated = thin::generate(&self.thin, &primary::parse(&bytes, &master_path)?)?;
        let target = self.args.cni_conf_dir.join(generated.file_name);
        if self.conf.as_ref() != Some(&generated) || !target.exists() {
            write_atomic(&target, generated.text.as_bytes(), 0o600, 0o755, Durability::Sync)?;
            remove(&self.args.cni_conf_dir.join(generated.other_name()))?;
            say(&format!("multus config file {} is created from {}", target.display(), master_path.display()));
            self.conf = Some(generated);
        }
        if self.args.rename_conf_file {
            let mut old = master_path.clone().into_os_string();
            old.push(".old");
            std::fs::rename(&master_path, &old).map_err(|e| Error::io("failed to rename", &master_path, e))?;
            say(&format!("original master file moved to {}", Path::new(&old).display()));
        }
        Ok(true)
    }

    /// One pass of the watch loop: failures are reported and the previous files kept.
    fn tick(&mut self) {
        if let Err(e) = self.kubeconfig() {
            self.problem(format!("failed to update the multus kubeconfig: {e}"));
        }
        match self.config() {
            Ok(true) => {}
            Ok(false) => self.problem(format!(
                "no master CNI config in {}; keeping the current multus config",
                self.args.multus_autoconfig_dir.display()
            )),
            Err(e) => self.problem(format!("failed to regenerate the multus config: {e}; keeping the previous one")),
        }
    }

    fn cleanup(&self) -> Result<(), Error> {
        let dir = &self.args.cni_conf_dir;
        Error::join([thin::CONF_NAME, thin::CONFLIST_NAME].iter().filter_map(|n| remove(&dir.join(n)).err()).collect())
    }
}

/// Runs the entrypoint until `stop` is raised (by SIGTERM/SIGINT in the binary). `env` looks up
/// the `KUBERNETES_SERVICE_*` variables.
pub fn run(args: &Args, env: &dyn Fn(&str) -> Option<String>, stop: &AtomicBool) -> Result<(), Error> {
    must_exist(&args.cni_conf_dir, "cni-conf-dir")?;
    must_exist(&args.cni_bin_dir, "cni-bin-dir")?;
    if !args.skip_multus_binary_copy {
        must_exist(&args.multus_bin_file, "multus-bin-file")?;
        let target = copy_atomic(&args.multus_bin_file, &args.cni_bin_dir, "multus")?;
        say(&format!("multus binary is copied to {}", target.display()));
    }

    if !args.is_auto() {
        let src = Path::new(&args.multus_conf_file);
        must_exist(src, "multus-conf-file")?;
        let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Error::Invalid(format!("--multus-conf-file {:?} has no file name", args.multus_conf_file))
        })?;
        let target = copy_atomic(src, &args.cni_conf_dir, name)?;
        say(&format!("multus config file {} is copied to {}", src.display(), target.display()));
        while !sleep_unless_stopped(Duration::from_secs(3600), stop) {}
        if args.cleanup_config_on_exit {
            remove(&target)?;
        }
        return Ok(());
    }

    let mut auto = Auto::new(args, env)?;
    auto.kubeconfig()?;
    while !auto.config()? {
        auto.problem(format!("waiting for a master CNI config in {}", args.multus_autoconfig_dir.display()));
        if sleep_unless_stopped(Duration::from_secs(1), stop) {
            return Ok(());
        }
    }
    if args.skip_config_watch {
        while !sleep_unless_stopped(Duration::from_secs(3600), stop) {}
    } else {
        say("entering watch loop");
        while !sleep_unless_stopped(Duration::from_secs(1), stop) {
            auto.tick();
        }
    }
    if args.cleanup_config_on_exit {
        auto.cleanup()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("thin_entrypoint").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_upstreams() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.cni_bin_dir, PathBuf::from("/host/opt/cni/bin"));
        assert_eq!(a.cni_conf_dir, PathBuf::from("/host/etc/cni/net.d"));
        assert_eq!(a.multus_conf_file, "auto");
        assert_eq!(a.multus_bin_file, PathBuf::from("/usr/src/multus-cni/bin/multus"));
        assert_eq!(a.multus_cni_conf_dir, PathBuf::from("/host/etc/cni/multus/net.d"));
        assert_eq!(a.multus_kubeconfig_file_host, "/etc/cni/net.d/multus.d/multus.kubeconfig");
        assert_eq!(a.multus_autoconfig_dir, PathBuf::from("/host/etc/cni/net.d"));
        assert!(a.multus_log_to_stderr);
        assert!(!a.cleanup_config_on_exit && !a.skip_config_watch && !a.skip_tls_verify && !a.force_cni_version);
        assert_eq!(a.service_account_dir, PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount"));
        assert_eq!(a.kubeconfig_path(), PathBuf::from("/host/etc/cni/net.d/multus.d/multus.kubeconfig"));
    }

    #[test]
    fn booleans_parse_like_pflag() {
        let a =
            parse(&["--cleanup-config-on-exit", "--multus-log-to-stderr=false", "--namespace-isolation=T"]).unwrap();
        assert!(a.cleanup_config_on_exit && a.namespace_isolation && !a.multus_log_to_stderr);
        let a = parse(&["--skip-tls-verify=1", "--force-cni-version", "--cni-version", "1.0.0"]).unwrap();
        assert!(a.skip_tls_verify && a.force_cni_version);
        assert_eq!(a.cni_version, "1.0.0");
        assert!(parse(&["--rename-conf-file=maybe"]).is_err());
        assert!(parse(&["--no-such-flag"]).is_err());
    }

    #[test]
    fn every_upstream_flag_exists_and_hidden_ones_are_hidden() {
        let cmd = Args::command();
        let visible: Vec<String> =
            cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long().map(str::to_string)).collect();
        for flag in [
            "cni-bin-dir",
            "cni-conf-dir",
            "cni-version",
            "multus-conf-file",
            "multus-bin-file",
            "multus-cni-conf-dir",
            "skip-multus-binary-copy",
            "multus-kubeconfig-file-host",
            "multus-master-cni-file-name",
            "namespace-isolation",
            "global-namespaces",
            "multus-autoconfig-dir",
            "multus-log-to-stderr",
            "multus-log-level",
            "multus-log-file",
            "override-network-name",
            "cleanup-config-on-exit",
            "skip-config-watch",
            "rename-conf-file",
            "readiness-indicator-file",
            "additional-bin-dir",
        ] {
            assert!(visible.iter().any(|v| v == flag), "--{flag} missing");
        }
        for hidden in ["skip-tls-verify", "force-cni-version", "service-account-dir"] {
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(hidden)).expect(hidden);
            assert!(arg.is_hide_set(), "--{hidden} should be hidden");
        }
    }
}
