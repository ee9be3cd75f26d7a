//! Keyless signing end to end: `release --keyless` against a local Sigstore stack, `verify` with
//! cosign's identity flags, and judges that are not ours.
//!
//! The stack (`xtask/tests/sigstore-stack/stack.js`) is the Sigstore project's own mock services,
//! npm `@sigstore/mock` (Fulcio with a CT log, Rekor with signed entry timestamps and checkpointed
//! inclusion proofs), served on 127.0.0.1 with a GitHub-Actions-style OIDC token endpoint: the
//! public-good instance and GitHub's token service cannot run here. Everything else is real: the
//! registry is Debian's docker-registry 2.8 (no referrers API, so the `sha256-<hex>` tag schema
//! carries the referrers), skopeo reads the referrers, and sigstore-python (PyPI) judges a bundle.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::root;
use crate::support::{Auth, Registry, Tmp, built, ref_of, refs, run, xtask_result};

/// The local Sigstore stack, killed on drop (it also exits when its stdin closes).
struct Stack {
    child: Child,
    dir: Tmp,
    url: String,
    issuer: String,
    identity: String,
    token_url: String,
}

impl Stack {
    fn start() -> Stack {
        let dir = Tmp::new("sigstore-stack");
        let modules = root().join("target/tools/sigstore-stack/node_modules");
        assert!(
            modules.join("@sigstore/mock").is_dir(),
            "{} missing: run scripts/install-test-deps.sh",
            modules.display()
        );
        let child = Command::new("node")
            .arg(root().join("xtask/tests/sigstore-stack/stack.js"))
            .args(["--dir", &dir.s("trust")])
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stack.log")).unwrap())
            .spawn()
            .expect("node");
        let info = dir.join("trust/stack.json");
        let start = Instant::now();
        while !info.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the Sigstore stack did not start: {}",
                std::fs::read_to_string(dir.join("stack.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&info).unwrap()).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        Stack { url: s("url"), issuer: s("issuer"), identity: s("identity"), token_url: s("tokenUrl"), child, dir }
    }

    fn trusted_root(&self) -> String {
        self.dir.s("trust/trusted_root.json")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let (ok, out, err) = run("curl", &[&["-fsS"], args].concat(), &[]);
    assert!(ok, "curl {args:?}: {err}");
    out
}

const ACCEPT: &str = "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

fn get_manifest(reg: &Registry, repo: &str, reference: &str) -> String {
    curl(&["-H", ACCEPT, &format!("http://{}/v2/{repo}/manifests/{reference}", reg.host())])
}

fn put_manifest(reg: &Registry, repo: &str, reference: &str, file: &Path) {
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{}/v2/{repo}/manifests/{reference}", reg.host()),
    ]);
}

/// sigstore-python's verdict on `bundle` for `artifact` (the verifier of PyPI's sigstore 4.5.1).
fn sigstore_python(stack: &Stack, bundle: &Path, artifact: &Path) -> (bool, String) {
    let exe = root().join("target/tools/sigstore-venv/bin/sigstore");
    assert!(exe.exists(), "{} missing: run scripts/install-test-deps.sh", exe.display());
    let (ok, out, err) = run(
        exe.to_str().unwrap(),
        &[
            "--trust-config",
            &stack.dir.s("trust/trust_config.json"),
            "verify",
            "identity",
            "--offline",
            "--bundle",
            bundle.to_str().unwrap(),
            "--cert-identity",
            &stack.identity,
            "--cert-oidc-issuer",
            &stack.issuer,
            artifact.to_str().unwrap(),
        ],
        &[],
    );
    (ok, format!("{out}{err}"))
}

#[test]
fn keyless_release_verifies_by_identity_and_independent_judges_agree() {
    let tmp = Tmp::new("keyless");
    let stack = Stack::start();
    let reg = Registry::start(Auth::None, None);
    let repo = "kl";
    let name = format!("{}/{repo}", reg.host());
    let trivy = crate::sign::clean_trivy(&tmp);
    let env = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", stack.token_url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token"),
        ("MULTUS_RUSTSEC_DB_MAX_AGE", "36500"),
        ("MULTUS_REGISTRY_USERNAME", ""),
        ("MULTUS_REGISTRY_PASSWORD", ""),
    ];
    let (ok, out) = xtask_result(
        &[
            "release",
            "--prebuilt",
            built().to_str().unwrap(),
            "--out-dir",
            &tmp.s("out"),
            "--arch",
            "amd64",
            "--arch",
            "arm64",
            "--registry",
            &name,
            "--insecure",
            "--keyless",
            "--fulcio-url",
            &stack.url,
            "--rekor-url",
            &stack.url,
            "--trusted-root",
            &stack.trusted_root(),
            "--trivy",
            trivy.to_str().unwrap(),
        ],
        &env,
    );
    assert!(ok, "{out}");
    assert!(out.contains(&format!("signed keylessly as {} (issuer {})", stack.identity, stack.issuer)), "{out}");
    // The release verified what it published as the certificate's identity, not with a key.
    assert!(out.contains(&format!("==> keyless: identity {} from issuer {}", stack.identity, stack.issuer)), "{out}");
    assert!(
        out.contains(&format!(
            "cosign verify --certificate-identity {} --certificate-oidc-issuer {}",
            stack.identity, stack.issuer
        )),
        "{out}"
    );

    // release.json: valid against the repository's schema, naming the certificate's identity and every
    // bundle referrer (4 images × (index + 2 platforms) signatures, 4 × 2 SBOM attestations).
    let record_path = tmp.join("out/release.json");
    crate::support::assert_schema_valid(
        &root().join("xtask/schemas/release.schema.json").display().to_string(),
        &[record_path.as_path()],
    );
    let record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let sigs = &record["signatures"];
    assert_eq!(sigs["certificate"]["identity"], stack.identity.as_str());
    assert_eq!(sigs["certificate"]["issuer"], stack.issuer.as_str());
    assert_eq!((sigs["format"].as_str(), sigs["bundles"].as_array().map(Vec::len)), (Some("both"), Some(20)));

    let l = tmp.join("out/oci/layout");
    let thick = ref_of(&l, "thick", None);
    let thick_digest = refs(&l)[&thick]["digest"].as_str().unwrap().to_string();
    let amd64 = ref_of(&l, "thick", Some("linux-amd64"));
    let amd64_digest = refs(&l)[&amd64]["digest"].as_str().unwrap().to_string();
    let verify = |reference: &str, identity: &str, issuer: &str, root: Option<&str>| {
        let mut args =
            vec!["verify", reference, "--certificate-identity", identity, "--certificate-oidc-issuer", issuer];
        if let Some(r) = root {
            args.extend(["--trusted-root", r]);
        }
        args.push("--insecure");
        xtask_result(&args, &[])
    };
    let troot = stack.trusted_root();
    let (ok, out) = verify(&format!("{name}:{thick}"), &stack.identity, &stack.issuer, Some(&troot));
    assert!(ok, "{out}");
    // The index and both platform manifests: each a legacy signature and a bundle, each platform an SBOM.
    // (3 signature bundles and 2 SBOM attestation bundles).
    assert!(
        out.contains(&format!("{thick_digest}: 3 manifests, 3 signatures, 5 Sigstore bundles, 2 SBOM attestations")),
        "{out}"
    );
    let (ok, out) = xtask_result(
        &[
            "verify",
            &format!("{name}:{thick}"),
            "--certificate-identity-regexp",
            "^https://github\\.com/multus-rs/multus-rs/\\.github/workflows/release\\.yml@refs/.*$",
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--trusted-root",
            &troot,
            "--insecure",
        ],
        &[],
    );
    assert!(ok, "{out}");

    // sigstore-rs, judging the legacy tags with the same trust root: accepts the identity, refuses another.
    let root_json = std::fs::read_to_string(&troot).unwrap();
    let judged =
        crate::sigstore_rs::verify_keyless(&format!("{name}:{thick}"), &root_json, &stack.identity, &stack.issuer);
    assert_eq!(judged, Ok(thick_digest.clone()), "sigstore-rs refused our keyless signature");
    let judged =
        crate::sigstore_rs::verify_keyless(&format!("{name}:{thick}"), &root_json, "https://evil", &stack.issuer);
    assert!(judged.is_err(), "sigstore-rs accepted another identity: {judged:?}");

    // Refusals, each naming what failed, each with the verification exit code.
    let (ok, out) = verify(
        &format!("{name}:{thick}"),
        "https://github.com/evil/x/.github/workflows/r.yml@refs/heads/main",
        &stack.issuer,
        Some(&troot),
    );
    assert!(!ok && out.contains("SubjectAltName does not match"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4);
    let (ok, out) = verify(
        &format!("{name}:{thick}"),
        &stack.identity,
        "https://token.actions.githubusercontent.com",
        Some(&troot),
    );
    assert!(!ok && out.contains("OIDCIssuer does not match"), "{out}");
    // The public-good root does not know the local Fulcio.
    let (ok, out) = verify(&format!("{name}:{thick}"), &stack.identity, &stack.issuer, None);
    assert!(!ok && out.contains("certificate verification failed"), "{out}");

    // A tampered platform manifest carrying the original's signatures: its digest is not the signed one.
    let original = get_manifest(&reg, repo, &amd64_digest);
    let tampered = original.replacen("\"schemaVersion\":2", "\"schemaVersion\":2,\"annotations\":{\"x\":\"y\"}", 1);
    assert_ne!(tampered, original);
    std::fs::write(tmp.join("tampered.json"), &tampered).unwrap();
    put_manifest(&reg, repo, "tampered", &tmp.join("tampered.json"));
    let tampered_digest = crate::support::sha256(tampered.as_bytes());
    for (from, to) in [(".sig", ".sig"), ("", "")] {
        let copy = get_manifest(&reg, repo, &format!("sha256-{}{from}", &amd64_digest[7..]));
        std::fs::write(tmp.join("copy.json"), copy).unwrap();
        let ct = if from.is_empty() { "index" } else { "manifest" };
        curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: application/vnd.oci.image.{ct}.v1+json"),
            "--data-binary",
            &format!("@{}", tmp.s("copy.json")),
            &format!("http://{}/v2/{repo}/manifests/sha256-{}{to}", reg.host(), &tampered_digest[7..]),
        ]);
    }
    let (ok, out) = verify(&format!("{name}:tampered"), &stack.identity, &stack.issuer, Some(&troot));
    assert!(!ok && out.contains(&format!("is signed for {amd64_digest}, not {tampered_digest}")), "{out}");

    // The Rekor entry removed from the amd64 signature: refused, naming the missing entry.
    let sig_tag = format!("sha256-{}.sig", &amd64_digest[7..]);
    let mut sig: Value = serde_json::from_str(&get_manifest(&reg, repo, &sig_tag)).unwrap();
    let removed = sig["layers"][0]["annotations"].as_object_mut().unwrap().remove("dev.sigstore.cosign/bundle");
    assert!(removed.is_some(), "a keyless legacy signature carries its Rekor entry");
    std::fs::write(tmp.join("sig.json"), serde_json::to_vec(&sig).unwrap()).unwrap();
    put_manifest(&reg, repo, &sig_tag, &tmp.join("sig.json"));
    let (ok, out) = verify(&format!("{name}:{thick}"), &stack.identity, &stack.issuer, Some(&troot));
    assert!(!ok && out.contains("no Rekor entry (dev.sigstore.cosign/bundle annotation)"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4);
    // sigstore-rs's cosign client drops that legacy layer but still finds the manifest's cosign v3
    // bundle among its referrers (here through the fallback tag) and accepts it: an independent
    // verdict on the bundle format. (With only the legacy layer left, it refuses: below, for arm64.)
    let judged =
        crate::sigstore_rs::verify_keyless(&format!("{name}:{amd64}"), &root_json, &stack.identity, &stack.issuer);
    assert_eq!(judged, Ok(amd64_digest.clone()), "sigstore-rs refused the amd64 manifest's bundle");

    // Referrers: the tag schema lists the amd64 manifest's two bundle referrers, both DSSE statements
    // about its digest as cosign v3 writes them (its signature and its SBOM attestation); skopeo reads
    // each bundle's manifest.
    let fallback = format!("sha256-{}", &amd64_digest[7..]);
    let (ok, raw, e) =
        run("skopeo", &["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}:{fallback}")], &[]);
    assert!(ok, "skopeo: {e}");
    let index: Value = serde_json::from_str(&raw).unwrap();
    let listed = index["manifests"].as_array().unwrap();
    let contents: Vec<&str> =
        listed.iter().map(|r| r["annotations"]["dev.sigstore.bundle.content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["dsse-envelope", "dsse-envelope"], "{raw}");
    let predicates: Vec<&str> =
        listed.iter().map(|r| r["annotations"]["dev.sigstore.bundle.predicateType"].as_str().unwrap()).collect();
    assert_eq!(predicates, ["https://sigstore.dev/cosign/sign/v1", "https://cyclonedx.org/bom"], "{raw}");
    std::fs::write(tmp.join("manifest.json"), &original).unwrap();
    assert_eq!(crate::support::sha256(original.as_bytes()), amd64_digest);
    let mut changed = original.clone().into_bytes();
    let i = changed.iter().position(|&b| b == b'2').unwrap();
    changed[i] = b'3';
    std::fs::write(tmp.join("changed.json"), &changed).unwrap();
    for referrer in listed {
        assert_eq!(referrer["artifactType"], "application/vnd.dev.sigstore.bundle.v0.3+json", "{raw}");
        let referrer_digest = referrer["digest"].as_str().unwrap();
        let (ok, raw, e) = run(
            "skopeo",
            &["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}@{referrer_digest}")],
            &[],
        );
        assert!(ok, "skopeo: {e}");
        let m: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(m["subject"]["digest"], amd64_digest.as_str(), "{raw}");
        assert_eq!(m["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
        let bundle_digest = m["layers"][0]["digest"].as_str().unwrap();

        // sigstore-python accepts the bundle for the published manifest (through its statement's
        // subject), and refuses it for a copy with one byte changed.
        let bundle = curl(&[&format!("http://{}/v2/{repo}/blobs/{bundle_digest}", reg.host())]);
        std::fs::write(tmp.join("bundle.json"), &bundle).unwrap();
        let (ok, out) = sigstore_python(&stack, &tmp.join("bundle.json"), &tmp.join("manifest.json"));
        assert!(ok && out.contains("OK"), "sigstore-python refused our {referrer}: {out}");
        let (ok, out) = sigstore_python(&stack, &tmp.join("bundle.json"), &tmp.join("changed.json"));
        assert!(!ok, "sigstore-python accepted a changed manifest with {referrer}: {out}");
    }

    // A signed entry timestamp that Rekor did not make (the thin index's SET swapped for the thick
    // index's): the sigstore crate leaves the SET to us, and we refuse it.
    let thin = ref_of(&l, "thin", None);
    let thin_digest = refs(&l)[&thin]["digest"].as_str().unwrap().to_string();
    let set_of = |digest: &str| -> (String, Value) {
        let tag = format!("sha256-{}.sig", &digest[7..]);
        let m: Value = serde_json::from_str(&get_manifest(&reg, repo, &tag)).unwrap();
        (tag, m)
    };
    let (_, thick_sig) = set_of(&thick_digest);
    let (thin_tag, mut thin_sig) = set_of(&thin_digest);
    let rekor_bundle = |m: &Value| -> Value {
        serde_json::from_str(m["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"].as_str().unwrap()).unwrap()
    };
    let mut rb = rekor_bundle(&thin_sig);
    rb["SignedEntryTimestamp"] = rekor_bundle(&thick_sig)["SignedEntryTimestamp"].clone();
    thin_sig["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] = rb.to_string().into();
    std::fs::write(tmp.join("thin-sig.json"), serde_json::to_vec(&thin_sig).unwrap()).unwrap();
    put_manifest(&reg, repo, &thin_tag, &tmp.join("thin-sig.json"));
    let (ok, out) = verify(&format!("{name}:{thin}"), &stack.identity, &stack.issuer, Some(&troot));
    assert!(!ok && out.contains("the Rekor signed entry timestamp does not verify"), "{out}");

    // The Rekor entry removed from the arm64 manifest's signature bundle (a new bundle blob, referrer
    // and fallback index pushed in their place): refused, naming the missing entry, although its
    // legacy signature is intact.
    let arm64 = ref_of(&l, "thick", Some("linux-arm64"));
    let arm64_digest = refs(&l)[&arm64]["digest"].as_str().unwrap().to_string();
    let fallback = format!("sha256-{}", &arm64_digest[7..]);
    let mut index: Value = serde_json::from_str(&get_manifest(&reg, repo, &fallback)).unwrap();
    let referrer_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut referrer: Value = serde_json::from_str(&get_manifest(&reg, repo, &referrer_digest)).unwrap();
    let blob = curl(&[&format!(
        "http://{}/v2/{repo}/blobs/{}",
        reg.host(),
        referrer["layers"][0]["digest"].as_str().unwrap()
    )]);
    let mut bundle: Value = serde_json::from_str(&blob).unwrap();
    assert_eq!(bundle["verificationMaterial"]["tlogEntries"].as_array().map(Vec::len), Some(1));
    bundle["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let stripped = serde_json::to_vec(&bundle).unwrap();
    std::fs::write(tmp.join("stripped.json"), &stripped).unwrap();
    let stripped_digest = crate::support::sha256(&stripped);
    let head =
        curl(&["-X", "POST", "-D", "-", "-o", "/dev/null", &format!("http://{}/v2/{repo}/blobs/uploads/", reg.host())]);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or(l.strip_prefix("location: ")))
        .expect("an upload location")
        .trim()
        .to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let location = if location.starts_with('/') { format!("http://{}{location}", reg.host()) } else { location };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", tmp.s("stripped.json")),
        &format!("{location}{sep}digest={stripped_digest}"),
    ]);
    referrer["layers"][0]["digest"] = stripped_digest.as_str().into();
    referrer["layers"][0]["size"] = stripped.len().into();
    let referrer_bytes = serde_json::to_vec(&referrer).unwrap();
    std::fs::write(tmp.join("referrer.json"), &referrer_bytes).unwrap();
    let new_referrer = crate::support::sha256(&referrer_bytes);
    put_manifest(&reg, repo, &new_referrer, &tmp.join("referrer.json"));
    index["manifests"][0]["digest"] = new_referrer.as_str().into();
    index["manifests"][0]["size"] = referrer_bytes.len().into();
    std::fs::write(tmp.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.index.v1+json",
        "--data-binary",
        &format!("@{}", tmp.s("index.json")),
        &format!("http://{}/v2/{repo}/manifests/{fallback}", reg.host()),
    ]);
    let (ok, out) = verify(&format!("{name}@{arm64_digest}"), &stack.identity, &stack.issuer, Some(&troot));
    assert!(!ok && out.contains("the bundle has 0 Rekor entries"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4);
    // With the legacy signature's Rekor entry gone as well, sigstore-rs has nothing it trusts either.
    let sig_tag = format!("sha256-{}.sig", &arm64_digest[7..]);
    let mut sig: Value = serde_json::from_str(&get_manifest(&reg, repo, &sig_tag)).unwrap();
    sig["layers"][0]["annotations"].as_object_mut().unwrap().remove("dev.sigstore.cosign/bundle");
    std::fs::write(tmp.join("sig.json"), serde_json::to_vec(&sig).unwrap()).unwrap();
    put_manifest(&reg, repo, &sig_tag, &tmp.join("sig.json"));
    let judged = crate::sigstore_rs::verify_keyless(
        &format!("{name}@{arm64_digest}"),
        &root_json,
        &stack.identity,
        &stack.issuer,
    );
    assert!(judged.is_err(), "sigstore-rs accepted signatures without their Rekor entries: {judged:?}");

    // Signatures from another key (the release layout signed again with the development key): no
    // certificate chains them to the trust root.
    let copy = tmp.join("resigned");
    let (ok, _, e) = run("cp", &["-r", l.to_str().unwrap(), copy.to_str().unwrap()], &[]);
    assert!(ok, "{e}");
    let (ok, out) = xtask_result(
        &["sign", "--layout", copy.to_str().unwrap(), "--identity", &name, "--sbom-dir", &tmp.s("sbom2")],
        &[],
    );
    assert!(ok, "{out}");
    let (ok, out) = xtask_result(
        &[
            "verify",
            &format!("oci:{}:{thick}", copy.display()),
            "--certificate-identity",
            &stack.identity,
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--trusted-root",
            &troot,
        ],
        &[],
    );
    assert!(!ok && out.contains("no Fulcio certificate"), "{out}");
}
