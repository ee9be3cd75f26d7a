//! `thin_entrypoint` run as the real binary against a temporary host tree (conf dir, bin dir,
//! service-account dir): the generated files as whole documents, the kubeconfig, the watch loop
//! refreshing the token and regenerating on master changes, cleanup on SIGTERM, the copy mode,
//! a late master with `--rename-conf-file`, and errors as non-zero exits.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{eventually, mode, read};

const FLANNEL: &str = r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

/// A host tree: `net.d` (conf and autoconfig dir), `bin`, the service account, the image's
/// multus binary.
struct Host {
    tmp: TempDir,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["net.d", "bin", "sa", "image"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let h = Host { tmp };
        std::fs::write(h.path("image/multus"), b"#!multus binary\n").unwrap();
        std::fs::set_permissions(h.path("image/multus"), std::fs::Permissions::from_mode(0o755)).unwrap();
        h.token("token-1");
        std::fs::write(h.path("sa/ca.crt"), "CA-1\n").unwrap();
        h
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn token(&self, t: &str) {
        std::fs::write(self.path("sa/token"), t).unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            format!("--cni-bin-dir={}", self.path("bin").display()),
            format!("--cni-conf-dir={}", self.path("net.d").display()),
            format!("--multus-autoconfig-dir={}", self.path("net.d").display()),
            format!("--multus-bin-file={}", self.path("image/multus").display()),
            format!("--multus-cni-conf-dir={}", self.path("multus/net.d").display()),
            format!("--service-account-dir={}", self.path("sa").display()),
        ]
    }

    fn kubeconfig(&self, token: &str, ca_b64: &str) -> String {
        format!(
            "# Kubeconfig file for Multus CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://[fd00:10:96::1]:443
    certificate-authority-data: {ca_b64}
users:
- name: multus
  user:
    token: \"{token}\"
contexts:
- name: multus-context
  context:
    cluster: local
    user: multus
current-context: multus-context
"
        )
    }
}

/// The binary running; killed on drop if the test did not stop it.
struct Running {
    child: Option<Child>,
}

impl Running {
    fn spawn(args: &[String], with_service_env: bool) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thin_entrypoint"));
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("KUBERNETES_SERVICE_PROTOCOL");
        if with_service_env {
            cmd.env("KUBERNETES_SERVICE_HOST", "fd00:10:96::1").env("KUBERNETES_SERVICE_PORT", "443");
        } else {
            cmd.env_remove("KUBERNETES_SERVICE_HOST").env_remove("KUBERNETES_SERVICE_PORT");
        }
        Running { child: Some(cmd.spawn().unwrap()) }
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself: (status, stdout, stderr).
    fn wait(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = self.child.take().unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("thin_entrypoint did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut out, mut err) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status, out, err)
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(self) -> (ExitStatus, String, String) {
        let pid = self.child.as_ref().unwrap().id() as libc::pid_t;
        // SAFETY: plain kill(2) of our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn generates_watches_refreshes_and_cleans_up_on_sigterm() {
    let host = Host::new();
    std::fs::write(host.path("net.d/10-flannel.conflist"), FLANNEL).unwrap();
    let mut args = host.args();
    args.push("--cleanup-config-on-exit".into());
    let mut running = Running::spawn(&args, true);

    let conf = host.path("net.d/00-multus.conf");
    let want_conf = format!(
        r#"{{
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus",
        "capabilities": {{"portMappings":true}},
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "delegates": [
                {FLANNEL}
        ]
}}
"#
    );
    eventually("00-multus.conf", || read(&conf) == Some(want_conf.clone()));
    let kubeconfig = host.path("net.d/multus.d/multus.kubeconfig");
    assert_eq!(read(&kubeconfig), Some(host.kubeconfig("token-1", "Q0EtMQo=")));
    assert_eq!((mode(&conf), mode(&kubeconfig)), (0o600, 0o600));
    assert_eq!(std::fs::read(host.path("bin/multus")).unwrap(), b"#!multus binary\n");
    assert_eq!(mode(&host.path("bin/multus")), 0o755);
    assert!(host.path("multus/net.d").is_dir(), "--multus-cni-conf-dir is created");

    // The kubelet rotates the projected token and the CA.
    host.token("token-2");
    std::fs::write(host.path("sa/ca.crt"), "CA-2\n").unwrap();
    eventually("the refreshed kubeconfig", || read(&kubeconfig) == Some(host.kubeconfig("token-2", "Q0EtMgo=")));

    // The master moves to CNI 1.0.0: the conflist form replaces the conf.
    let master_v1 = FLANNEL.replace("0.3.1", "1.0.0");
    std::fs::write(host.path("net.d/10-flannel.conflist"), &master_v1).unwrap();
    let conflist = host.path("net.d/00-multus.conflist");
    let want_conflist = format!(
        r#"{{
    "cniVersion": "1.0.0",
    "name": "multus-cni-network",
    "plugins": [ {{
        "type": "multus",
        "capabilities": {{"portMappings":true}},
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "delegates": [
            {master_v1}
        ]
    }}]
}}
"#
    );
    eventually("00-multus.conflist", || read(&conflist) == Some(want_conflist.clone()));
    eventually("the stale 00-multus.conf removed", || !conf.exists());
    assert!(running.alive());

    let (status, out, err) = running.terminate();
    assert!(status.success(), "exit {status:?}\nstdout:\n{out}\nstderr:\n{err}");
    assert!(!conflist.exists() && !conf.exists(), "--cleanup-config-on-exit deletes the generated config");
    assert!(kubeconfig.exists());
}

#[test]
fn late_master_is_waited_for_renamed_and_kept_without_cleanup() {
    let host = Host::new();
    let mut args = host.args();
    args.extend(["--rename-conf-file".into(), "--skip-config-watch".into(), "--multus-log-level=VERBOSE".into()]);
    args.push("--skip-multus-binary-copy=true".into());
    let mut running = Running::spawn(&args, true);
    let conf = host.path("net.d/00-multus.conf");
    eventually("the kubeconfig", || host.path("net.d/multus.d/multus.kubeconfig").exists());
    assert!(running.alive() && !conf.exists(), "waiting for a master");

    let master = r#"{"cniVersion":"0.4.0","name":"k8s-pod-network","type":"calico"}"#;
    std::fs::write(host.path("net.d/10-calico.conf"), master).unwrap();
    let want = format!(
        r#"{{
        "cniVersion": "0.4.0",
        "name": "multus-cni-network",
        "type": "multus",
        "logLevel": "verbose",
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "delegates": [
                {master}
        ]
}}
"#
    );
    eventually("00-multus.conf", || read(&conf) == Some(want.clone()));
    eventually("the master renamed", || read(&host.path("net.d/10-calico.conf.old")).as_deref() == Some(master));
    assert!(!host.path("net.d/10-calico.conf").exists());
    assert!(!host.path("bin/multus").exists(), "--skip-multus-binary-copy");

    let (status, out, err) = running.terminate();
    assert!(status.success(), "exit {status:?}\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(read(&conf), Some(want), "kept without --cleanup-config-on-exit");
}

#[test]
fn copy_mode_installs_the_given_file_and_removes_it_on_exit() {
    let host = Host::new();
    std::fs::create_dir(host.path("multus-conf")).unwrap();
    let text = r#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus","delegates":[]}"#;
    std::fs::write(host.path("multus-conf/70-multus.conf"), text).unwrap();
    let mut args = host.args();
    args.push(format!("--multus-conf-file={}", host.path("multus-conf/70-multus.conf").display()));
    args.push("--cleanup-config-on-exit".into());
    // No service environment: the copy mode needs no kubeconfig.
    let running = Running::spawn(&args, false);
    let copy = host.path("net.d/70-multus.conf");
    eventually("the copied config", || read(&copy).as_deref() == Some(text));
    let (status, out, err) = running.terminate();
    assert!(status.success(), "exit {status:?}\nstdout:\n{out}\nstderr:\n{err}");
    assert!(!copy.exists());
    assert!(!host.path("net.d/multus.d").exists(), "no kubeconfig in copy mode");
}

#[test]
fn errors_exit_non_zero_with_the_reason() {
    let host = Host::new();
    let mut args = host.args();
    args[1] = format!("--cni-conf-dir={}", host.path("absent").display());
    let (status, _, err) = Running::spawn(&args, true).wait();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("cni-conf-dir") && err.contains("absent"), "{err}");

    std::fs::write(host.path("net.d/10-flannel.conflist"), FLANNEL).unwrap();
    let mut args = host.args();
    args.push("--multus-log-level=info".into());
    let (status, _, err) = Running::spawn(&args, true).wait();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("did not understand: \"info\""), "{err}");

    let (status, _, err) = Running::spawn(&host.args(), false).wait();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");

    let mut args = host.args();
    args.push("--cni-version=0.4.0".into());
    let (status, _, err) = Running::spawn(&args, true).wait();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("\"0.4.0\" while master plugin cni version is \"0.3.1\""), "{err}");
    assert!(!host.path("net.d/00-multus.conf").exists());
}

#[test]
fn version_flag() {
    let (status, out, _) = Running::spawn(&["--version".into()], false).wait();
    assert!(status.success());
    assert!(out.starts_with("thin_entrypoint: multus-cni version:"), "{out}");
}
