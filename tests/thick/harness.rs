//! The thick-mode harness: the daemon, the shim and their configs are shared with the bench
//! (`support::thick`); raw HTTP to the socket with `curl --unix-socket` is the tests' own.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub use crate::support::thick::*;

/// What `curl` got back.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Http {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// An HTTP exchange with `curl --unix-socket`.
pub fn curl(socket: &Path, method: &str, path: &str, body: Option<&[u8]>) -> Http {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-s".to_string(),
        "-o".into(),
        dir.path().join("body").display().to_string(),
        "-w".into(),
        "%{http_code} %{content_type}".into(),
        "--unix-socket".into(),
        socket.display().to_string(),
        "-X".into(),
        method.into(),
    ];
    if let Some(b) = body {
        let file = dir.path().join("request");
        std::fs::write(&file, b).unwrap();
        args.extend(["-H".into(), "Content-Type: application/json".into(), "--data-binary".into()]);
        args.push(format!("@{}", file.display()));
    }
    args.push(format!("http://dummy{path}"));
    let out = Command::new("curl").args(&args).output().expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let written = String::from_utf8(out.stdout).unwrap();
    let (status, content_type) = written.split_once(' ').unwrap_or((&written, ""));
    Http {
        status: status.parse().unwrap(),
        content_type: content_type.to_string(),
        body: std::fs::read_to_string(dir.path().join("body")).unwrap_or_default(),
    }
}
