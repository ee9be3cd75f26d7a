//! `cargo xtask keygen`, `sign`, `verify` and `release`, judged by code that is not ours:
//!
//! - `openssl dgst -sha256 -verify cosign.pub` checks a signature over a SimpleSigning payload and
//!   a DSSE envelope's PAE, taken from the layout (and refuses a tampered payload);
//! - a Python judge (`cryptography` for ECDSA, urllib for HTTP) pulls from Debian's
//!   `docker-registry` what cosign and skopeo pull — the image, the `sha256-<hex>.sig` tag, the
//!   payload blob and its annotation — and checks signature, digest and identity.
//!
//! skopeo cannot judge here: Debian's skopeo 1.9.3 carries a patch that disables sigstore
//! (`Source image rejected: Debian-local change: sigstore disabled` for a `sigstoreSigned`
//! policy), so the policy.json judge the issue names must run elsewhere (see README).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::root;
use crate::support::{Auth, Registry, Tmp, blob, built, layout, ref_of, refs, run, sha256, xtask_result};

const PASSWORD: (&str, &str) = ("COSIGN_PASSWORD", "correct horse");

/// What cosign/skopeo do against a registry, in Python with its own crypto and HTTP.
const JUDGE: &str = r#"
import base64, hashlib, json, sys, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
base, repo, ref, pub, identity = sys.argv[1:6]
ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
def get(path, accept=None):
    req = urllib.request.Request(base + path, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req) as r:
        return r.read()
top = get(f"/v2/{repo}/manifests/{ref}", ACCEPT)
digests = ["sha256:" + hashlib.sha256(top).hexdigest()]
digests += [m["digest"] for m in json.loads(top).get("manifests", [])]
key = serialization.load_pem_public_key(open(pub, "rb").read())
for d in digests:
    body = get(f"/v2/{repo}/manifests/{d}", ACCEPT)
    assert hashlib.sha256(body).hexdigest() == d[7:], f"{d}: other bytes"
    try:
        sigs = json.loads(get(f"/v2/{repo}/manifests/sha256-{d[7:]}.sig", ACCEPT))
    except urllib.error.HTTPError as e:
        sys.exit(f"{d}: no signature tag ({e.code})")
    for layer in sigs["layers"]:
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        payload = get(f"/v2/{repo}/blobs/{layer['digest']}")
        assert hashlib.sha256(payload).hexdigest() == layer["digest"][7:]
        sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        key.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
        claim = json.loads(payload)["critical"]
        assert claim["type"] == "cosign container image signature"
        if claim["image"]["docker-manifest-digest"] != d:
            sys.exit(f"{d}: the signature is for {claim['image']['docker-manifest-digest']}")
        if claim["identity"]["docker-reference"] != identity:
            sys.exit(f"{d}: the signature names {claim['identity']['docker-reference']}")
print(f"judge: {len(digests)} manifests signed by the key")
"#;

fn judge(reg: &Registry, repo: &str, reference: &str, public: &Path, identity: &str) -> (bool, String) {
    let base = format!("http://{}", reg.host());
    let (ok, o, e) =
        run("/usr/bin/python3", &["-c", JUDGE, &base, repo, reference, public.to_str().unwrap(), identity], &[]);
    (ok, format!("{o}{e}"))
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let (ok, out) = xtask_result(&["keygen", "--output-dir", dir.to_str().unwrap()], &[PASSWORD]);
    assert!(ok, "{out}");
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

fn openssl_verify(tmp: &Tmp, public: &Path, data: &[u8], sig: &[u8]) -> (bool, String) {
    std::fs::write(tmp.join("data"), data).unwrap();
    std::fs::write(tmp.join("sig.der"), sig).unwrap();
    let (ok, o, e) = run(
        "openssl",
        &["dgst", "-sha256", "-verify", public.to_str().unwrap(), "-signature", &tmp.s("sig.der"), &tmp.s("data")],
        &[],
    );
    (ok, format!("{o}{e}"))
}

fn publish(reg: &Registry, repo: &str, layout: &Path) {
    let (ok, out) = xtask_result(
        &[
            "publish",
            "--registry",
            &format!("{}/{repo}", reg.host()),
            "--layout",
            layout.to_str().unwrap(),
            "--insecure",
        ],
        &[("MULTUS_REGISTRY_USERNAME", ""), ("MULTUS_REGISTRY_PASSWORD", "")],
    );
    assert!(ok, "{out}");
}

#[test]
fn keygen_sign_verify_publish_and_independent_judges() {
    let tmp = Tmp::new("sign");
    let (key, public) = keygen(&tmp.join("keys"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&key).unwrap().starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let (ok, _, e) = run("openssl", &["pkey", "-pubin", "-in", public.to_str().unwrap(), "-noout", "-text"], &[]);
    assert!(ok, "openssl cannot read cosign.pub: {e}");
    let (ok, out) = xtask_result(&["keygen", "--output-dir", &tmp.s("keys")], &[PASSWORD]);
    assert!(!ok && out.contains("refusing to overwrite"), "{out}");

    let reg = Registry::start(Auth::None, None);
    let identity = format!("{}/multus", reg.host());
    let (ok, _, e) = run("cp", &["-a", layout().to_str().unwrap(), &tmp.s("layout")], &[]);
    assert!(ok, "{e}");
    let l = tmp.join("layout");
    let sign_args = [
        "sign",
        "--layout",
        &tmp.s("layout"),
        "--key",
        key.to_str().unwrap(),
        "--identity",
        &identity,
        "--sbom-dir",
        &tmp.s("sbom"),
    ];
    let (ok, out) = xtask_result(&sign_args, &[("COSIGN_PASSWORD", "wrong")]);
    assert!(!ok && out.contains("wrong password"), "{out}");
    let (ok, out) = xtask_result(&sign_args, &[PASSWORD]);
    assert!(ok, "{out}");
    // thick, thin, thick-debug, thin-debug: an index and three platforms each.
    // Bundles: one signature per manifest, one SBOM attestation per platform manifest.
    assert!(out.contains("summary: 16 signatures, 28 Sigstore bundle referrers, 12 SBOM attestations"), "{out}");
    let (ok, out) = xtask_result(
        &["verify", &format!("oci:{}", l.display()), "--key", public.to_str().unwrap(), "--identity", &identity],
        &[],
    );
    assert!(ok, "{out}");

    // openssl: the thick index's signature over its payload, and an SBOM attestation's envelope.
    let all = refs(&l);
    let thick = ref_of(&l, "thick", None);
    let thick_digest = all[&thick]["digest"].as_str().unwrap().to_string();
    let sig_manifest: Value = serde_json::from_slice(&blob(
        &l,
        all[&format!("sha256-{}.sig", &thick_digest[7..])]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layer = &sig_manifest["layers"][0];
    let payload = blob(&l, layer["digest"].as_str().unwrap());
    let sig = base64::engine::general_purpose::STANDARD
        .decode(layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap())
        .unwrap();
    let claim: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claim["critical"]["image"]["docker-manifest-digest"], thick_digest.as_str());
    let (ok, out) = openssl_verify(&tmp, &public, &payload, &sig);
    assert!(ok && out.contains("Verified OK"), "{out}");
    let mut tampered = payload.clone();
    tampered[40] ^= 1;
    let (ok, out) = openssl_verify(&tmp, &public, &tampered, &sig);
    assert!(!ok && out.contains("Verification failure"), "{out}");
    let arm = ref_of(&l, "thick", Some("linux-arm64"));
    let arm_digest = all[&arm]["digest"].as_str().unwrap();
    let att: Value =
        serde_json::from_slice(&blob(&l, all[&format!("sha256-{}.att", &arm_digest[7..])]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(att["layers"][0]["annotations"]["predicateType"], "https://cyclonedx.org/bom");
    let env: Value = serde_json::from_slice(&blob(&l, att["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let d = |s: &Value| base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap()).unwrap();
    let statement = d(&env["payload"]);
    let mut pae = format!("DSSEv1 28 application/vnd.in-toto+json {} ", statement.len()).into_bytes();
    pae.extend_from_slice(&statement);
    let (ok, out) = openssl_verify(&tmp, &public, &pae, &d(&env["signatures"][0]["sig"]));
    assert!(ok && out.contains("Verified OK"), "{out}");
    let st: Value = serde_json::from_slice(&statement).unwrap();
    assert_eq!(st["subject"][0]["digest"]["sha256"], &arm_digest[7..]);
    let purls: Vec<&str> =
        st["predicate"]["components"].as_array().unwrap().iter().filter_map(|c| c["purl"].as_str()).collect();
    assert!(purls.iter().any(|p| p.starts_with("pkg:cargo/libc@")), "{purls:?}");
    assert_eq!(std::fs::read_dir(tmp.join("sbom")).unwrap().count(), 12, "one SBOM file per platform image");
    let sboms: Vec<PathBuf> = std::fs::read_dir(tmp.join("sbom")).unwrap().map(|e| e.unwrap().path()).collect();
    crate::support::assert_schema_valid("cyclonedx-1.5", &sboms.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    // The debug variants' busybox is named as the Debian package it is, on each architecture.
    let texts: Vec<String> = sboms.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    for arch in ["amd64", "arm64", "armhf"] {
        let deb = "pkg:deb/debian/busybox-static@";
        let n =
            texts.iter().filter(|t| t.contains(deb) && t.contains(&format!("?arch={arch}&distro=debian-12"))).count();
        assert_eq!(n, 2, "thick-debug and thin-debug on {arch} name busybox-static");
    }

    // Published: our verify and the judge accept it, from the registry.
    publish(&reg, "multus", &l);
    let (ok, out) = xtask_result(
        &["verify", &format!("{identity}:{thick}"), "--key", public.to_str().unwrap(), "--insecure"],
        &[("MULTUS_REGISTRY_USERNAME", ""), ("MULTUS_REGISTRY_PASSWORD", "")],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "cosign verify --key {} --insecure-ignore-tlog=true {identity}@{thick_digest}",
            public.display()
        )),
        "{out}"
    );
    // --json: every verified reference with the digest the registry serves.
    let v =
        crate::xtask_json(&["verify", &format!("{identity}:{thick}"), "--key", public.to_str().unwrap(), "--insecure"]);
    assert_eq!(v["verified"][0]["digest"], thick_digest.as_str(), "{v}");
    assert!(v["verified"][0]["signatures"].as_u64().unwrap() >= 1, "{v}");
    let (ok, out) = judge(&reg, "multus", &thick, &public, &identity);
    assert!(ok && out.contains("judge: 4 manifests signed by the key"), "{out}");
    // sigstore-rs accepts the index (by tag) and every platform manifest (by digest).
    let pem = std::fs::read(&public).unwrap();
    let index: Value = serde_json::from_slice(&blob(&l, &thick_digest)).unwrap();
    let children: Vec<String> =
        index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect();
    assert!(!children.is_empty());
    assert_eq!(crate::sigstore_rs::verify(&format!("{identity}:{thick}"), &pem), Ok(thick_digest.clone()));
    for c in &children {
        assert_eq!(
            crate::sigstore_rs::verify(&format!("{identity}@{c}"), &pem),
            Ok(c.clone()),
            "platform manifest {c}"
        );
    }

    // Another key: refused by both.
    let (_, other) = keygen(&tmp.join("other"));
    let (ok, out) =
        xtask_result(&["verify", &format!("{identity}:{thick}"), "--key", other.to_str().unwrap(), "--insecure"], &[]);
    assert!(!ok && out.contains("does not verify with this public key"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4, "a failed verification exits 4");
    let (ok, out) = judge(&reg, "multus", &thick, &other, &identity);
    assert!(!ok && out.contains("InvalidSignature"), "{out}");
    let refused = crate::sigstore_rs::verify(&format!("{identity}:{thick}"), &std::fs::read(&other).unwrap());
    // Its PublicKeyVerifier constraint is left unsatisfied.
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("unsatisfied_constraints")),
        "sigstore-rs, another key: {refused:?}"
    );

    // Unsigned images: refused by both.
    publish(&reg, "unsigned", layout());
    let (ok, out) = xtask_result(
        &["verify", &format!("{}/unsigned:{thick}", reg.host()), "--key", public.to_str().unwrap(), "--insecure"],
        &[],
    );
    assert!(!ok && out.contains("not signed"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4, "a failed verification exits 4");
    let (ok, out) = judge(&reg, "unsigned", &thick, &public, &format!("{}/unsigned", reg.host()));
    assert!(!ok && out.contains("no signature tag (404)"), "{out}");
    let refused = crate::sigstore_rs::verify(&format!("{}/unsigned:{thick}", reg.host()), &pem);
    assert!(refused.as_ref().is_err_and(|e| e.contains("no signature layer")), "sigstore-rs, unsigned: {refused:?}");

    // Tampered: the thin index's (valid) signature put under the thick index's signature tag.
    let thin_digest = all[&ref_of(&l, "thin", None)]["digest"].as_str().unwrap().to_string();
    let thin_sig = blob(&l, all[&format!("sha256-{}.sig", &thin_digest[7..])]["digest"].as_str().unwrap());
    std::fs::write(tmp.join("thin.sig.json"), &thin_sig).unwrap();
    let url = format!("http://{}/v2/multus/manifests/sha256-{}.sig", reg.host(), &thick_digest[7..]);
    let (ok, _, e) = run(
        "curl",
        &[
            "-fsS",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &format!("@{}", tmp.s("thin.sig.json")),
            &url,
        ],
        &[],
    );
    assert!(ok, "curl PUT: {e}");
    let (ok, out) =
        xtask_result(&["verify", &format!("{identity}:{thick}"), "--key", public.to_str().unwrap(), "--insecure"], &[]);
    assert!(!ok && out.contains(&format!("is signed for {thin_digest}, not {thick_digest}")), "{out}");
    let (ok, out) = judge(&reg, "multus", &thick, &public, &identity);
    assert!(!ok && out.contains(&format!("the signature is for {thin_digest}")), "{out}");
    let refused = crate::sigstore_rs::verify(&format!("{identity}:{thick}"), &pem);
    // sigstore-rs drops a layer whose payload names another digest: none is left for the thick index.
    assert!(
        refused.as_ref().is_err_and(|e| e.contains(&format!("no signature layer for {thick_digest}"))),
        "sigstore-rs, the thin index's signature under the thick index's tag: {refused:?}"
    );
    // The thin index itself still verifies: the refusal above is about the swap, not the key.
    assert_eq!(crate::sigstore_rs::verify(&format!("{identity}@{thin_digest}"), &pem), Ok(thin_digest.clone()));
}

/// A stand-in trivy that reports nothing (see gate.rs for why there is no real one).
pub(crate) fn clean_trivy(tmp: &Tmp) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = tmp.join("trivy");
    std::fs::write(
        &p,
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo '{\"Version\":\"0.62.1\"}'; exit 0; fi\n\
         prev=\"\"; for a in \"$@\"; do [ \"$prev\" = --output ] && out=\"$a\"; prev=\"$a\"; done\n\
         echo '{\"SchemaVersion\":2,\"Results\":[]}' > \"$out\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn release_from_prebuilt_binaries_publishes_signed_verified_images() {
    let tmp = Tmp::new("release");
    let (key, public) = keygen(&tmp.join("keys"));
    let reg = Registry::start(Auth::None, None);
    let name = format!("{}/rel", reg.host());
    // The shared snapshot is months old: a publishing release would refuse it (checked below), so
    // these runs accept any age.
    const ANY_AGE: (&str, &str) = ("MULTUS_RUSTSEC_DB_MAX_AGE", "36500");
    let no_trivy = [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), PASSWORD, ANY_AGE];
    let base = [
        "release",
        "--prebuilt",
        built().to_str().unwrap(),
        "--out-dir",
        &tmp.s("out"),
        "--arch",
        "amd64",
        "--arch",
        "arm64",
    ];

    // The plan as JSON, and refusals before anything is built, in a dry run as in a real one.
    let (ok, out) = xtask_result(
        &[&base[..], &["--registry", &name, "--insecure", "--key", key.to_str().unwrap(), "--dry-run"]].concat(),
        &no_trivy,
    );
    assert!(!ok && out.contains("refusing to publish unscanned images"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 5, "a dry run refuses as the real run would");
    let (ok, out) = xtask_result(
        &[
            &base[..],
            &["--registry", &name, "--insecure", "--key", key.to_str().unwrap(), "--allow-unscanned", "--dry-run"],
        ]
        .concat(),
        &no_trivy,
    );
    assert!(ok, "{out}");
    let plan: Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    // A stale advisory database is refused, in a dry run as in a real one.
    let (ok, stale) = xtask_result(
        &[
            &base[..],
            &["--registry", &name, "--insecure", "--key", key.to_str().unwrap(), "--allow-unscanned", "--dry-run"],
            &["--max-rustsec-db-age", "1"],
        ]
        .concat(),
        &no_trivy,
    );
    assert!(!ok && stale.contains("days old") && stale.contains("--max-rustsec-db-age"), "{stale}");
    assert_eq!(crate::support::last_exit_code(), 5);
    let steps: Vec<&str> = plan["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["merge", "image", "scan", "sign", "publish", "verify"]);
    let gh_output = tmp.join("github-output");
    let gh = gh_output.display().to_string();
    let with_gh: Vec<(&str, &str)> = no_trivy.iter().copied().chain([("GITHUB_OUTPUT", gh.as_str())]).collect();
    let (ok, out) = xtask_result(
        &[&base[..], &["--registry", &name, "--insecure", "--key", key.to_str().unwrap()]].concat(),
        &with_gh,
    );
    assert!(!ok && out.contains("refusing to publish unscanned images"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 5);
    assert!(!tmp.join("out/oci").exists(), "refused before the images");
    assert!(!gh_output.exists() && !tmp.join("out/release.json").exists(), "a refused release records nothing");
    let (ok, out) = xtask_result(&[&base[..], &["--registry", "ghcr.io/x/y", "--allow-unscanned"]].concat(), &no_trivy);
    assert!(!ok && out.contains("needs --key or --keyless"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 5);

    // The whole pipeline, scanned by the stand-in, published to the local registry.
    let trivy = clean_trivy(&tmp);
    let (ok, out) = xtask_result(
        &[
            &base[..],
            &["--registry", &name, "--insecure", "--key", key.to_str().unwrap(), "--trivy", trivy.to_str().unwrap()],
        ]
        .concat(),
        &[
            PASSWORD,
            ANY_AGE,
            ("MULTUS_REGISTRY_USERNAME", ""),
            ("MULTUS_REGISTRY_PASSWORD", ""),
            ("GITHUB_OUTPUT", gh.as_str()),
        ],
    );
    assert!(ok, "{out}");
    for must in [
        "release plan:",
        "==> merge prebuilt",
        "==> scan",
        "==> sign",
        "==> publish",
        "==> verify",
        "release summary:",
        "passed: Trivy 0.62.1",
    ] {
        assert!(out.contains(must), "{must} missing:\n{out}");
    }
    let l = tmp.join("out/oci/layout");
    let thick = ref_of(&l, "thick", None);
    let digest = refs(&l)[&thick]["digest"].as_str().unwrap().to_string();
    assert!(out.contains("a consumer verifies with:\n    cosign verify --key "), "{out}");
    assert!(out.contains(&format!("/keys/cosign.pub --insecure-ignore-tlog=true {name}@{digest}")), "{out}");
    // The deployment manifests name exactly the published thick index.
    let rendered = std::fs::read_to_string(tmp.join("out/deployments/multus-daemonset-thick.yml")).unwrap();
    assert!(rendered.contains(&format!("image: {name}@{digest}")), "{rendered}");
    assert!(!rendered.contains("multus-rs/multus-rs:stable"), "every image reference pinned");
    let (ok, out) = judge(&reg, "rel", &thick, &public, &name);
    assert!(ok, "{out}");

    // release.json: valid against the schema in the repository, and what the registry holds.
    let record_path = tmp.join("out/release.json");
    crate::support::assert_schema_valid(
        &root().join("xtask/schemas/release.schema.json").display().to_string(),
        &[record_path.as_path()],
    );
    let record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert_eq!(record["registry"], name.as_str());
    // The database the gate used is recorded with its commit and date (the snapshot's SNAPSHOT.md).
    let snapshot = std::fs::read_to_string(root().join("../shared/data/rustsec-advisory-db/SNAPSHOT.md")).unwrap();
    let commit = record["scan"]["rustsecDbCommit"].as_str().unwrap();
    assert!(commit.len() == 40 && snapshot.contains(commit), "{commit}");
    assert!(snapshot.contains(record["scan"]["rustsecDbDate"].as_str().unwrap()));
    assert_eq!(record["commit"], crate::support::build_manifest()["commit"]);
    let images = record["images"].as_array().unwrap();
    assert_eq!(images.len(), 4, "thick, thin and their -debug variants");
    for img in images {
        let digest = img["digest"].as_str().unwrap();
        assert_eq!(img["pinned"], format!("{name}@{digest}").as_str());
        for tag in img["tags"].as_array().unwrap() {
            let raw = run(
                "skopeo",
                &["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}:{}", tag.as_str().unwrap())],
                &[],
            );
            assert!(raw.0, "{tag}: {}", raw.2);
            assert_eq!(sha256(raw.1.as_bytes()), digest, "the registry's {tag} is the recorded index");
        }
        for p in img["platforms"].as_array().unwrap() {
            let raw = run(
                "skopeo",
                &["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}:{}", p["tag"].as_str().unwrap())],
                &[],
            );
            assert_eq!(sha256(raw.1.as_bytes()), p["digest"].as_str().unwrap(), "{}", p["tag"]);
            let sbom = tmp.join("out").join(p["sbom"].as_str().unwrap());
            assert!(sbom.is_file(), "{}", sbom.display());
        }
    }
    for b in record["binaries"].as_array().unwrap() {
        let bytes = std::fs::read(tmp.join("out").join(b["path"].as_str().unwrap())).unwrap();
        assert_eq!(sha256(&bytes), format!("sha256:{}", b["sha256"].as_str().unwrap()), "{}", b["path"]);
    }
    let outputs = std::fs::read_to_string(&gh_output).unwrap();
    let thick_digest = images.iter().find(|i| i["name"] == "thick").unwrap()["digest"].as_str().unwrap();
    assert!(outputs.contains(&format!("digest-thick={thick_digest}\n")), "{outputs}");
    assert!(outputs.contains(&format!("pinned-thick={name}@{thick_digest}\n")), "{outputs}");
    assert!(outputs.contains(&format!("release-json={}\n", record_path.display())), "{outputs}");

    // dist/: the GitHub Release's assets. sha256sum accepts SHA256SUMS, openssl accepts its
    // signature with the release's public key (and refuses a tampered copy), tar lists every node
    // binary per platform.
    let dist = tmp.join("out/dist");
    assert!(outputs.contains(&format!("dist={}\n", dist.display())), "{outputs}");
    let in_dist = |script: &str| run("sh", &["-c", &format!("cd {} && {script}", dist.display())], &[]);
    let (ok, o, e) = in_dist("sha256sum --check --strict SHA256SUMS");
    assert!(ok, "{o}{e}");
    let pub_s = public.display().to_string();
    let verify = format!(
        "base64 -d SHA256SUMS.sig > {t}/sig.der && openssl dgst -sha256 -verify {pub_s} -signature {t}/sig.der",
        t = tmp.0.display()
    );
    let (ok, o, e) = in_dist(&format!("{verify} SHA256SUMS"));
    assert!(ok && o.contains("Verified OK"), "{o}{e}");
    let (ok, _, _) =
        in_dist(&format!("sed 's/^./0/' SHA256SUMS > {t}/tampered && {verify} {t}/tampered", t = tmp.0.display()));
    assert!(!ok, "a tampered SHA256SUMS must not verify");
    let names: Vec<String> = std::fs::read_to_string(dist.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_string())
        .collect();
    let version = record["version"].as_str().unwrap();
    for platform in ["linux-amd64", "linux-arm64"] {
        let tarball = format!("multus-{version}-{platform}.tar.gz");
        assert!(names.contains(&tarball), "{names:?}");
        let (ok, list, e) = in_dist(&format!("tar -tzf {tarball}"));
        assert!(ok, "{e}");
        for bin in crate::support::NODE_BINARIES {
            assert!(list.lines().any(|l| l == format!("multus-{version}-{platform}/{bin}")), "{bin} in {list}");
        }
    }
    let platforms: usize = images.iter().map(|i| i["platforms"].as_array().unwrap().len()).sum();
    let sboms = names.iter().filter(|n| n.ends_with(".cdx.json")).count();
    assert!(names.contains(&"release.json".to_string()) && sboms == platforms, "{sboms} SBOMs: {names:?}");
    assert!(names.iter().any(|n| n.ends_with(".yml")), "{names:?}");

    // The GitHub Release, against a stand-in for GitHub's REST API (GitHub cannot run here; the
    // stand-in answers with the documented status codes and fields and keeps what it is sent).
    let gh = FakeGitHub::start();
    let (ok, stdout, e) = run(
        env!("CARGO_BIN_EXE_xtask"),
        &[
            "github-release",
            "--dist",
            dist.to_str().unwrap(),
            "--tag",
            "v9.9.9-rc.1",
            "--repo",
            "o/r",
            "--api-url",
            &format!("http://127.0.0.1:{}", gh.port),
            "--json",
        ],
        &[("GITHUB_TOKEN", "t0k")],
    );
    assert!(ok, "{e}");
    let published: Value = serde_json::from_str(&stdout).unwrap();
    let log = gh.log.lock().unwrap();
    let create = log.iter().find(|r| r.0 == "POST" && r.1 == "/repos/o/r/releases").expect("a release was created");
    let created: Value = serde_json::from_slice(&create.2).unwrap();
    assert_eq!((created["draft"].as_bool(), created["prerelease"].as_bool()), (Some(true), Some(true)));
    assert!(created["body"].as_str().unwrap().contains(&format!("{name}@{thick_digest}")), "{created}");
    let uploads: Vec<&Seen> = log.iter().filter(|r| r.1.starts_with("/uploads/")).collect();
    let files: Vec<String> =
        std::fs::read_dir(&dist).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(uploads.len(), files.len(), "every file of dist/ is uploaded once");
    for (_, path, body) in &uploads {
        let name = crate::support::unescape(path.split("?name=").nth(1).unwrap());
        assert_eq!(body, &std::fs::read(dist.join(&name)).unwrap(), "{name} arrives byte for byte");
    }
    assert_eq!(
        log.last().map(|r| (r.0.as_str(), r.1.as_str())),
        Some(("PATCH", "/repos/o/r/releases/1")),
        "published last"
    );
    assert_eq!(serde_json::from_slice::<Value>(&log.last().unwrap().2).unwrap()["draft"], false);
    assert_eq!(published["assets"].as_array().unwrap().len(), files.len());
    drop(log);

    // A tampered dist/ is refused before any request.
    std::fs::write(dist.join("release.json"), "{}").unwrap();
    let before = gh.log.lock().unwrap().len();
    let (ok, out) = xtask_result(
        &[
            "github-release",
            "--dist",
            dist.to_str().unwrap(),
            "--tag",
            "v9.9.9",
            "--repo",
            "o/r",
            "--api-url",
            &format!("http://127.0.0.1:{}", gh.port),
        ],
        &[("GITHUB_TOKEN", "t0k")],
    );
    assert!(!ok && out.contains("does not match its SHA256SUMS line"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4);
    assert_eq!(gh.log.lock().unwrap().len(), before, "nothing was sent");
}

/// A stand-in for GitHub's REST API, as far as `github-release` goes: `GET
/// /repos/o/r/releases/tags/T` (404: none yet), `POST /repos/o/r/releases` (201, a draft with an
/// `upload_url` template pointing back here), `POST /uploads/...?name=N` (201 with the stored
/// size), `PATCH /repos/o/r/releases/1` (200). It records (method, path, body) of every request;
/// every answer closes the connection.
struct FakeGitHub {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// (method, path with query, body) of one request.
type Seen = (String, String, Vec<u8>);

impl FakeGitHub {
    fn start() -> FakeGitHub {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let (head, mut body) = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (String::new(), Vec::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some((h, b)) = crate::support::split_head(&buf) {
                        break (h, b.to_vec());
                    }
                };
                if head.is_empty() {
                    continue;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while body.len() < len {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                let mut first = head.lines().next().unwrap().split_whitespace();
                let (method, path) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
                let authorized = head.lines().any(|l| l.eq_ignore_ascii_case("authorization: bearer t0k"));
                let (status, answer) = if !authorized {
                    (401, serde_json::json!({"message": "Bad credentials"}))
                } else if method == "GET" && path.starts_with("/repos/o/r/releases/tags/") {
                    (404, serde_json::json!({"message": "Not Found"}))
                } else if method == "POST" && path == "/repos/o/r/releases" {
                    let up = format!("http://127.0.0.1:{port}/uploads/repos/o/r/releases/1/assets{{?name,label}}");
                    (201, serde_json::json!({"id": 1, "draft": true, "upload_url": up}))
                } else if method == "POST" && path.starts_with("/uploads/repos/o/r/releases/1/assets?name=") {
                    let name = path.split("?name=").nth(1).unwrap().to_string();
                    (
                        201,
                        serde_json::json!({"name": name, "size": body.len(), "state": "uploaded",
                        "browser_download_url": format!("https://github.com/o/r/releases/download/v/{name}")}),
                    )
                } else if method == "PATCH" && path == "/repos/o/r/releases/1" {
                    (
                        200,
                        serde_json::json!({"id": 1, "draft": false, "html_url": "https://github.com/o/r/releases/tag/v"}),
                    )
                } else {
                    (404, serde_json::json!({"message": "Not Found"}))
                };
                l2.lock().unwrap().push((method, path, body));
                let text = answer.to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        FakeGitHub { port, log }
    }
}
