//! Test delegates that misbehave, written as shell scripts into a directory of their own (put
//! first in `binDir`), and small helpers to run the binaries with a bound so a regression fails
//! instead of hanging the suite.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::thick::{Outcome, bridge, finish, shim_conf};
use crate::support::{CNI_BIN, Node};

/// A directory of hostile plugins, removed with the node's scratch directory.
pub fn plugins(node: &Node) -> PathBuf {
    let dir = node.path("hostile-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // Hangs on every command, after starting a child that hangs too; records both pids.
    script(
        "hang",
        r#"conf=$(cat); pids=$(printf '%s' "$conf" | sed -n 's/.*"pidDir":"\([^"]*\)".*/\1/p')
sleep 600 & echo $! > "$pids/child.$CNI_COMMAND"; echo $$ > "$pids/plugin.$CNI_COMMAND"; wait"#,
    );
    // Fails on ADD after printing 20 MB; succeeds on everything else.
    script(
        "flood",
        r#"cat >/dev/null; [ "$CNI_COMMAND" = ADD ] || exit 0
head -c 20000000 /dev/zero | tr '\0' x; exit 1"#,
    );
    // Fails every ADD with its own error object; succeeds on everything else.
    script(
        "fail",
        r#"cat >/dev/null; [ "$CNI_COMMAND" = ADD ] || exit 0
echo '{"cniVersion":"1.0.0","code":11,"msg":"refusing on purpose"}'; exit 1"#,
    );
    dir
}

/// `binDir` with the hostile plugins first, then the reference plugins.
pub fn conf_with(node: &Node, delegates: Vec<Value>, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "cniDir": node.path("multus"), "binDir": plugins(node), "logLevel": "debug", "logFile": node.path("multus.log"),
        "logToStderr": false, "delegates": delegates});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Waits for a started plugin at most `limit`, killing it past that (a regression then fails the
/// test instead of hanging it). Returns the outcome and how long it took.
pub fn bounded(mut child: Child, limit: Duration) -> (Outcome, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (finish(child), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = finish(child);
            panic!("the plugin did not finish within {limit:?}: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is gone (or a zombie waiting for its reaper).
pub fn gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z")
}

/// Waits until `pid` is gone; panics with `what` if it is still there after 10 s.
pub fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the file exists and holds a pid.
pub fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `dir`, recursively, as paths relative to it.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The shim's config for one bridge delegate (`cbr`, 10.99.0.0/24) from the reference plugins.
pub fn bridge_shim_conf(node: &Node) -> Value {
    shim_conf(node, "1.0.0", json!({"binDir": CNI_BIN, "delegates": [bridge(node, "cbr", "tbr0", "10.99.0.0/24")]}))
}

/// A daemon request body as the shim sends it, for a client that talks to the socket itself.
pub fn daemon_request(cmd: &str, container: &str, netns: &str, args: &str, conf: &Value) -> Vec<u8> {
    use base64::Engine;
    json!({"env": {"CNI_COMMAND": cmd, "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
        "CNI_ARGS": args, "CNI_PATH": CNI_BIN},
        "config": base64::engine::general_purpose::STANDARD.encode(conf.to_string())})
    .to_string()
    .into_bytes()
}
