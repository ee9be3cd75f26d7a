//! `chrootDir`: the daemon runs delegates inside another root, finding them in that root's
//! directories. The root here is a temporary tree with `/bin/sh`, its libraries and one plugin.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::harness::{Daemon, daemon_config, shim, shim_conf};
use crate::support::Node;

/// Copies `/bin/sh` and the libraries `ldd` names into `root`.
fn install_shell(root: &Path) {
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let ldd = std::process::Command::new("ldd").arg(&sh).output().unwrap();
    let libs = String::from_utf8(ldd.stdout).unwrap();
    let files =
        std::iter::once(sh.clone()).chain(libs.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from));
    for f in files {
        let dest = root.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    if !root.join("bin/sh").exists() {
        std::fs::copy(root.join(sh.strip_prefix("/").unwrap()), root.join("bin/sh")).unwrap();
    }
}

#[test]
fn delegates_run_inside_the_chroot() {
    let node = Node::new();
    let root = node.path("hostroot");
    install_shell(&root);
    std::fs::write(root.join("only-in-the-chroot"), "").unwrap();
    let bin = root.join("opt/cni/bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Answers ADD with an address only when it can see the chroot's marker file.
    let script = r#"#!/bin/sh
[ -e /only-in-the-chroot ] || { echo '{"code":100,"msg":"not in the chroot"}'; exit 1; }
if [ "$CNI_COMMAND" = ADD ]; then
  echo "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"$CNI_IFNAME\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"address\":\"10.55.0.2/24\",\"interface\":0}]}"
fi
"#;
    std::fs::write(bin.join("where"), script).unwrap();
    std::fs::set_permissions(bin.join("where"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({"chrootDir": root})));
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"delegates": [{"cniVersion": "1.0.0", "name": "w", "type": "where"}], "binDir": "/opt/cni/bin"}),
    );
    let r = shim(&node, "ADD", &conf, "chr1").ok().json();
    assert_eq!(r["ips"][0]["address"], "10.55.0.2/24", "{r}");
    assert_eq!(r["interfaces"][0]["sandbox"], node.pod.path());
    shim(&node, "DEL", &conf, "chr1").ok();
    assert!(!node.path("multus/chr1").exists());
}

/// `ChrootExec` on its own (root only, so here rather than in the unit tests): plugins are found
/// in the chroot's directories, run inside it with their stdin and environment, and a missing
/// plugin is named by its path inside the chroot's view.
#[test]
fn chroot_exec_finds_and_runs_plugins_inside_the_root() {
    use multus::cni::Exec;
    use multus::thick::chroot::ChrootExec;
    crate::support::require_root();
    let root = tempfile::tempdir().unwrap();
    install_shell(root.path());
    std::fs::write(root.path().join("only-in-the-chroot"), "").unwrap();
    let bin = root.path().join("opt/cni/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("where"),
        "#!/bin/sh\nread line\nif [ -e /only-in-the-chroot ]; then echo \"inside $PWD $CNI_COMMAND $line\"; else echo outside; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("where"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exec = ChrootExec::new(root.path()).unwrap();
    let paths = vec![PathBuf::from("/usr/lib/nothing"), PathBuf::from("/opt/cni/bin")];
    let plugin = exec.find_in_path("where", &paths).unwrap();
    assert_eq!(plugin, PathBuf::from("/opt/cni/bin/where"), "the path inside the chroot");
    let out = exec.exec_plugin(&plugin, b"{\"a\":1}\n", &[("CNI_COMMAND".into(), "ADD".into())]).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "inside / ADD {\"a\":1}\n");
    let e = exec.find_in_path("bridge", &[PathBuf::from("/opt/cni/bin")]).unwrap_err();
    assert!(e.to_string().contains(&root.path().join("opt/cni/bin").display().to_string()), "{e}");
    let e = exec.exec_plugin(Path::new("/opt/cni/bin/missing"), b"", &[]).unwrap_err();
    assert!(e.to_string().contains("failed to execute plugin /opt/cni/bin/missing"), "{e}");
}
