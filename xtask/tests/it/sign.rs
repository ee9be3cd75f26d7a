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
    assert!(out.contains("summary: 16 signatures, 12 SBOM attestations"), "{out}");
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
    let (ok, out) = judge(&reg, "multus", &thick, &public, &identity);
    assert!(ok && out.contains("judge: 4 manifests signed by the key"), "{out}");

    // Another key: refused by both.
    let (_, other) = keygen(&tmp.join("other"));
    let (ok, out) =
        xtask_result(&["verify", &format!("{identity}:{thick}"), "--key", other.to_str().unwrap(), "--insecure"], &[]);
    assert!(!ok && out.contains("does not verify with this public key"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 4, "a failed verification exits 4");
    let (ok, out) = judge(&reg, "multus", &thick, &other, &identity);
    assert!(!ok && out.contains("InvalidSignature"), "{out}");

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
}

/// A stand-in trivy that reports nothing (see gate.rs for why there is no real one).
fn clean_trivy(tmp: &Tmp) -> PathBuf {
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
    let no_trivy = [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), PASSWORD];
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
        &[PASSWORD, ("MULTUS_REGISTRY_USERNAME", ""), ("MULTUS_REGISTRY_PASSWORD", ""), ("GITHUB_OUTPUT", gh.as_str())],
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
}
