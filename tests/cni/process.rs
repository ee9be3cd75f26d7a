//! Our per-pod plugin binaries start without std's runtime (`skel::plugin_main` prepares the process): what they
//! must still guarantee as processes.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use serde_json::json;

/// A delegate that exits without reading its config: feeding it the rest of a config larger
/// than a pipe holds writes to a pipe nobody reads. That must be an error we handle (EPIPE), not
/// a SIGPIPE that kills multus half way through a DEL.
#[test]
fn multus_survives_a_delegate_that_exits_without_reading_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("quiet");
    std::fs::write(&plugin, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "m", "type": "multus", "cniDir": dir.path().join("multus"),
        "delegates": [{"cniVersion": "1.0.0", "name": "q", "type": "quiet", "pad": "x".repeat(256 * 1024)}]});
    let mut child = Command::new(env!("CARGO_BIN_EXE_multus"))
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), None, "multus was killed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()), (Some(0), ""));
}
