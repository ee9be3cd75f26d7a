//! `cargo xtask publish` against Debian's `docker-registry` (distribution 2.8) on 127.0.0.1:
//! plain HTTP, htpasswd over TLS with a self-made CA, and the Bearer token flow (our token server
//! in front of the registry's real JWT verification). Judged by skopeo: `inspect --raw` must
//! return the layout's exact bytes for every tag, and `copy --all` back to a layout must give
//! the same index digest. Faults come from a proxy with a fixed seed and from killing the
//! registry mid-push; a corrupted layer must be refused before anything is pushed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    Auth, Faults, NO_FAULTS, Proxy, Registry, Tmp, TokenServer, blob, http_get, layout, make_tls, ref_of, refs, run,
    xtask_result,
};

/// `xtask publish --registry REG --layout L EXTRA...`; creds only through `envs`.
fn publish(reg: &str, layout: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut args = vec!["publish", "--registry", reg, "--layout", layout.to_str().unwrap()];
    args.extend_from_slice(extra);
    // No credentials from the environment, nor from a docker config the machine happens to have.
    let mut e =
        vec![("MULTUS_REGISTRY_USERNAME", ""), ("MULTUS_REGISTRY_PASSWORD", ""), ("DOCKER_CONFIG", "/nonexistent")];
    e.extend_from_slice(envs);
    xtask_result(&args, &e)
}

/// (uploaded, mounted, present) from the summary line.
fn counts(out: &str) -> (usize, usize, usize) {
    let line = out.lines().find(|l| l.starts_with("summary:")).unwrap_or_else(|| panic!("no summary in {out}"));
    let num = |after: &str| -> usize {
        let i = line.find(after).unwrap_or_else(|| panic!("{after:?} in {line}"));
        line[..i].split_whitespace().last().unwrap().trim_start_matches('(').parse().unwrap()
    };
    (num(" uploaded"), num(" mounted"), num(" present;"))
}

/// Configs and layers of the layout (what a push must upload).
fn blob_count(layout: &Path) -> usize {
    let mut all = std::collections::BTreeSet::new();
    for d in refs(layout).values().filter(|d| d["mediaType"] == "application/vnd.oci.image.manifest.v1+json") {
        let m: serde_json::Value = serde_json::from_slice(&blob(layout, d["digest"].as_str().unwrap())).unwrap();
        all.insert(m["config"]["digest"].as_str().unwrap().to_string());
        for l in m["layers"].as_array().unwrap() {
            all.insert(l["digest"].as_str().unwrap().to_string());
        }
    }
    all.len()
}

/// skopeo returns the layout's exact bytes for every ref name, and our output pinned each.
fn assert_identical(name: &str, layout: &Path, out: &str, skopeo_opts: &[&str]) {
    for (r, d) in refs(layout) {
        let digest = d["digest"].as_str().unwrap();
        assert!(out.contains(&format!("{name}:{r}@{digest}")), "pinned reference for {r} missing in {out}");
        let (ok, raw, err) =
            run("skopeo", &[&["inspect", "--raw"], skopeo_opts, &[&format!("docker://{name}:{r}")]].concat(), &[]);
        assert!(ok, "skopeo inspect --raw {name}:{r}: {err}");
        assert!(raw.as_bytes() == blob(layout, digest), "{name}:{r}: the registry's bytes differ from {digest}");
    }
}

/// `skopeo copy --all` of the thick index back into a fresh layout gives the same index digest.
fn assert_copy_back(name: &str, layout: &Path, skopeo_opts: &[&str]) {
    let back = Tmp::new("copy-back");
    let r = ref_of(layout, "thick", None);
    let dest = format!("oci:{}:x", back.s("layout"));
    let (ok, _, err) =
        run("skopeo", &[&["copy", "--all"], skopeo_opts, &[&format!("docker://{name}:{r}"), &dest]].concat(), &[]);
    assert!(ok, "skopeo copy --all: {err}");
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("layout/index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], refs(layout)[&r]["digest"], "index digest after a round trip");
}

#[test]
fn push_plain_monolithic_chunked_mounted_and_again() {
    let layout = layout();
    let total = blob_count(layout);
    let reg = Registry::start(Auth::None, None);
    let name = format!("{}/multus", reg.host());
    let plain = ["--src-tls-verify=false"];
    let insecure = ["--tls-verify=false"];

    // Plain HTTP needs --insecure: without it, TLS to a plain server fails.
    let (ok, out) = publish(&name, layout, &["--attempts", "1"], &[]);
    assert!(!ok, "{out}");

    let (ok, out) = publish(&name, layout, &["--insecure"], &[]);
    assert!(ok, "{out}");
    assert_eq!(counts(&out), (total, 0, 0), "{out}");
    assert_identical(&name, layout, &out, &insecure);
    assert_copy_back(&name, layout, &plain);

    // Chunked uploads (64 KiB PATCHes) into another repository give the same result.
    let chunked = format!("{}/chunked", reg.host());
    let (ok, out) = publish(&chunked, layout, &["--insecure", "--chunk-size", "65536"], &[]);
    assert!(ok, "{out}");
    assert_eq!(counts(&out), (total, 0, 0), "{out}");
    assert_identical(&chunked, layout, &out, &insecure);

    // Cross-repository mounts: nothing is uploaded.
    let mounted = format!("{}/team/mounted", reg.host());
    let (ok, out) = publish(&mounted, layout, &["--insecure", "--mount-from", "nope", "--mount-from", "multus"], &[]);
    assert!(ok, "{out}");
    assert_eq!(counts(&out), (0, total, 0), "{out}");
    assert_identical(&mounted, layout, &out, &insecure);

    // Again: everything is there, nothing is sent, no tag moves.
    let (ok, out) = publish(&name, layout, &["--insecure"], &[]);
    assert!(ok, "{out}");
    assert_eq!(counts(&out), (0, 0, total), "{out}");
    assert!(out.contains("manifests: 0 pushed") && out.contains("tags: 0 set"), "{out}");

    // --json: stdout is one document naming every tag with the digest the registry holds.
    let (ok, stdout, err) = run(
        env!("CARGO_BIN_EXE_xtask"),
        &["publish", "--registry", &name, "--layout", layout.to_str().unwrap(), "--insecure", "--json"],
        &[("DOCKER_CONFIG", "/nonexistent")],
    );
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["registry"], name.as_str());
    let tags = doc["tags"].as_array().unwrap();
    assert_eq!(tags.len(), refs(layout).len());
    for t in tags {
        let (tag, digest) = (t["tag"].as_str().unwrap(), t["digest"].as_str().unwrap());
        assert_eq!(refs(layout)[tag]["digest"], digest);
        assert_eq!(t["pinned"], format!("{name}:{tag}@{digest}").as_str());
        let (ok, raw, e) =
            run("skopeo", &["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}:{tag}")], &[]);
        assert!(ok, "{e}");
        assert_eq!(crate::support::sha256(raw.as_bytes()), digest, "{tag}");
    }
}

#[test]
fn push_over_tls_with_a_custom_ca_and_htpasswd() {
    let layout = layout();
    let tmp = Tmp::new("tls");
    let (ca, cert, key) = make_tls(&tmp);
    let (ok, htpasswd, err) = run("htpasswd", &["-Bbn", "tester", "secret"], &[]);
    assert!(ok, "htpasswd: {err}");
    std::fs::write(tmp.join("htpasswd"), htpasswd).unwrap();
    let reg = Registry::start(Auth::Htpasswd(tmp.join("htpasswd")), Some((&cert, &key)));
    let name = format!("{}/multus", reg.host());
    let creds = [("MULTUS_REGISTRY_USERNAME", "tester"), ("MULTUS_REGISTRY_PASSWORD", "secret")];
    let ca_s = ca.to_str().unwrap();

    // Not trusted without the CA; refused with a wrong password or without any.
    let (ok, out) = publish(&name, layout, &["--attempts", "1"], &creds);
    assert!(!ok && out.to_lowercase().contains("certificate"), "{out}");
    let (ok, out) = publish(
        &name,
        layout,
        &["--ca", ca_s],
        &[("MULTUS_REGISTRY_USERNAME", "tester"), ("MULTUS_REGISTRY_PASSWORD", "wrong")],
    );
    assert!(!ok && out.contains("401"), "{out}");
    let (ok, out) = publish(&name, layout, &["--ca", ca_s], &[]);
    assert!(!ok && out.contains("--username/--password"), "{out}");

    let (ok, out) = publish(&name, layout, &["--ca", ca_s], &creds);
    assert!(ok, "{out}");
    std::fs::create_dir_all(tmp.join("certs")).unwrap();
    std::fs::copy(&ca, tmp.join("certs/ca.crt")).unwrap();
    let certs = tmp.s("certs");
    assert_identical(&name, layout, &out, &["--cert-dir", &certs, "--creds", "tester:secret"]);
    assert_copy_back(&name, layout, &["--src-cert-dir", &certs, "--src-creds", "tester:secret"]);
}

/// A registry with a self-signed certificate (what most private registries have; `openssl req
/// -x509` marks it a CA too, which rustls alone refuses as a server certificate): `--ca` with that
/// certificate pins it; another self-signed certificate is refused with a message naming both.
/// Credentials come only from a docker config: plain `auths` as `docker login` writes them, then
/// a `credHelpers` entry whose helper (a script on PATH) is asked for this very host.
#[test]
fn self_signed_certificate_pinned_and_docker_config_credentials() {
    use base64::Engine as _;
    let layout = layout();
    let tmp = Tmp::new("pinned");
    let self_signed = |name: &str| {
        let (key, cert) = (tmp.s(&format!("{name}.key")), tmp.s(&format!("{name}.pem")));
        let (ok, _, e) = run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                &key,
                "-out",
                &cert,
            ],
            &[],
        );
        assert!(ok, "openssl: {e}");
        (PathBuf::from(key), PathBuf::from(cert))
    };
    let (key, cert) = self_signed("registry");
    let (_, other) = self_signed("other");
    let (ok, htpasswd, err) = run("htpasswd", &["-Bbn", "tester", "secret"], &[]);
    assert!(ok, "htpasswd: {err}");
    std::fs::write(tmp.join("htpasswd"), htpasswd).unwrap();
    let reg = Registry::start(Auth::Htpasswd(tmp.join("htpasswd")), Some((&cert, &key)));
    let name = format!("{}/multus", reg.host());

    let wrong = publish(&name, layout, &["--ca", other.to_str().unwrap(), "--attempts", "1"], &[]);
    assert!(
        !wrong.0 && wrong.1.contains("is neither issued by a CA in") && wrong.1.contains("other.pem"),
        "{}",
        wrong.1
    );

    // docker login's file: auths keyed by host, base64 user:password.
    let docker = tmp.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("tester:secret");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths": {{"https://{}": {{"auth": "{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let docker_s = docker.to_str().unwrap();
    let (ok, out) = publish(&name, layout, &["--ca", cert.to_str().unwrap()], &[("DOCKER_CONFIG", docker_s)]);
    assert!(ok, "{out}");
    let certs = tmp.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
    assert_identical(&name, layout, &out, &["--cert-dir", certs.to_str().unwrap(), "--creds", "tester:secret"]);

    // A credential helper: docker-credential-xtasktest on PATH, reading the host from stdin.
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = tmp.join("asked");
    let helper = bin.join("docker-credential-xtasktest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh
[ \"$1\" = get ] || exit 2
cat > {}
echo '{{\"ServerURL\":\"x\",\"Username\":\"tester\",\"Secret\":\"secret\"}}'
",
            asked.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(docker.join("config.json"), format!(r#"{{"credHelpers": {{"{}": "xtasktest"}}}}"#, reg.host()))
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let other_name = format!("{}/multus-helper", reg.host());
    let (ok, out) = publish(
        &other_name,
        layout,
        &["--ca", cert.to_str().unwrap()],
        &[("DOCKER_CONFIG", docker_s), ("PATH", &path)],
    );
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), reg.host(), "the helper was asked for this host");
    assert_identical(&other_name, layout, &out, &["--cert-dir", certs.to_str().unwrap(), "--creds", "tester:secret"]);
}

#[test]
fn push_with_bearer_tokens() {
    let layout = layout();
    let tmp = Tmp::new("token");
    let (tokens, cert) = TokenServer::start(&tmp);
    let reg = Registry::start(Auth::Token { realm: tokens.realm(), cert }, None);
    let name = format!("{}/multus", reg.host());

    let (ok, out) = publish(&name, layout, &["--insecure"], &[]);
    assert!(!ok && out.contains("the token endpoint") && out.contains("401"), "{out}");

    let creds = [("MULTUS_REGISTRY_USERNAME", "tester"), ("MULTUS_REGISTRY_PASSWORD", "secret")];
    let (ok, out) = publish(&name, layout, &["--insecure"], &creds);
    assert!(ok, "{out}");
    assert!(!out.contains(" 0 tokens fetched"), "{out}");
    let queries = tokens.queries.lock().unwrap().clone();
    assert!(
        queries.iter().any(|q| q.contains("service=test-registry") && q.contains("scope=repository%3Amultus%3A")),
        "{queries:?}"
    );
    assert_identical(&name, layout, &out, &["--tls-verify=false", "--creds", "tester:secret"]);
}

#[test]
fn a_push_through_a_faulty_proxy_completes_with_the_same_result() {
    let layout = layout();
    let reg = Registry::start(Auth::None, None);
    let proxy =
        Proxy::start(reg.port, 0x5eed_1234, Faults { status_500: 8, status_429: 8, drop_before: 6, drop_after: 6 });
    let via = format!("127.0.0.1:{}/multus", proxy.port);
    // 1 MiB chunks: every layer still goes up in many PATCHes. A chunk the registry took but whose
    // answer was dropped cannot be resumed on distribution (the `_state` in our upload URL is then
    // stale), so that session restarts from byte 0; with 128 KiB chunks the multi-MB layers of
    // today's images met a drop in almost every attempt.
    let args = ["--insecure", "--chunk-size", "1048576", "--attempts", "10", "--backoff-ms", "5"];
    let (ok, out) = publish(&via, layout, &args, &[]);
    let log = proxy.take_log();
    assert!(ok, "{out}");
    for kind in ["500", "429", "drop before", "drop after"] {
        assert!(log.faults.get(kind).copied().unwrap_or(0) > 0, "no {kind:?} injected: {:?}", log.faults);
    }
    eprintln!("faults injected: {:?} over {} requests", log.faults, log.requests.len());
    for l in out.lines().filter(|l| l.starts_with("summary:") || l.contains("upload sessions restarted")) {
        eprintln!("{l}");
    }
    // Judged at the registry itself, not through the proxy.
    let direct = format!("{}/multus", reg.host());
    assert_identical(&direct, layout, &out.replace(&via, &direct), &["--tls-verify=false"]);
}

#[test]
fn a_registry_killed_mid_push_then_restarted_lets_a_rerun_finish_without_resending() {
    let layout = layout();
    let total = blob_count(layout);
    let mut reg = Registry::start(Auth::None, None);
    let proxy = Proxy::start(reg.port, 1, NO_FAULTS);
    let via = format!("127.0.0.1:{}/multus", proxy.port);
    let args = ["--insecure", "--attempts", "3", "--backoff-ms", "5"];

    // Hold the push after two blobs have landed, kill the registry, let the push fail.
    let landed = proxy.hold_after_uploads(2);
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["publish", "--registry", &via, "--layout", layout.to_str().unwrap()])
        .args(args)
        .env_remove("MULTUS_REGISTRY_USERNAME")
        .env_remove("MULTUS_REGISTRY_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(Some(child));
    landed.recv_timeout(Duration::from_secs(120)).expect("two blobs uploaded");
    reg.kill();
    proxy.release();
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the push should have died with the registry: {text}");

    reg.restart();
    proxy.take_log();
    let (ok, out) = publish(&via, layout, &args, &[]);
    assert!(ok, "{out}");
    let (uploaded, mounted, present) = counts(&out);
    assert!(present >= 2 && uploaded + present == total && mounted == 0, "{out}");
    let sessions =
        proxy.take_log().requests.iter().filter(|(m, p, _)| m == "POST" && p.ends_with("/blobs/uploads/")).count();
    assert_eq!(sessions, uploaded, "one upload session per missing blob, none for what was there");
    let direct = format!("{}/multus", reg.host());
    assert_identical(&direct, layout, &out.replace(&via, &direct), &["--tls-verify=false"]);
}

/// Kills a still-running xtask if the test fails before waiting for it.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_corrupted_layer_is_refused_before_anything_is_pushed() {
    let src = layout();
    let tmp = Tmp::new("corrupt");
    let (ok, _, err) = run("cp", &["-a", src.to_str().unwrap(), &tmp.s("layout")], &[]);
    assert!(ok, "{err}");
    let layout = tmp.join("layout");
    let arm = &refs(&layout)[&ref_of(&layout, "thick", Some("linux-arm64"))];
    let m: serde_json::Value = serde_json::from_slice(&blob(&layout, arm["digest"].as_str().unwrap())).unwrap();
    let digest = m["layers"][1]["digest"].as_str().unwrap().to_string();
    let path = layout.join("blobs/sha256").join(&digest[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let reg = Registry::start(Auth::None, None);
    let (ok, out) = publish(&format!("{}/multus", reg.host()), &layout, &["--insecure"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("blob {digest}: content digest")) && out.contains("nothing was pushed"), "{out}");
    let (status, body) = http_get(reg.port, "/v2/_catalog", &[]);
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, r#"{"repositories":[]}"#));
}
