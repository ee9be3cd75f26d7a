//! The OCI image documents we write and read: descriptors, the image config, the image manifest
//! and the image index (image-spec v1.1.1), their media types, and digests of exact bytes.
//!
//! Everything here is plain data and pure functions. Field order is fixed by the struct order and
//! maps are `BTreeMap`s, so the same inputs always serialise to the same bytes; the bytes that are
//! digested are the bytes that are written and pushed (`Blob`).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// cosign's signature payload (a SimpleSigning JSON document) and attestation (a DSSE envelope).
pub const MT_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const MT_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// A Sigstore bundle (protobuf-specs v0.3 JSON), cosign v3's signature and attestation format.
pub const MT_SIGSTORE_BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The OCI 1.1 empty descriptor's media type (an artifact manifest's config: the 2 bytes `{}`).
pub const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Layers that are payloads stored as they are (signatures, attestations), not gzip'd tars.
pub fn is_attached_payload(media_type: &str) -> bool {
    media_type == MT_SIMPLESIGNING || media_type == MT_DSSE
}

/// What `GET`/`HEAD` of a manifest must accept (Debian's registry answers 404 without the OCI types).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_SOURCE: &str = "org.opencontainers.image.source";
pub const ANN_REVISION: &str = "org.opencontainers.image.revision";
pub const ANN_VERSION: &str = "org.opencontainers.image.version";
pub const ANN_LICENSES: &str = "org.opencontainers.image.licenses";
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_DESCRIPTION: &str = "org.opencontainers.image.description";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The hex part of a `sha256:` digest, refusing anything else (it becomes a file name).
pub fn digest_hex(digest: &str) -> anyhow::Result<&str> {
    let hex = digest.strip_prefix("sha256:").with_context(|| format!("digest {digest:?} is not sha256"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("digest {digest:?} is not 64 lower-case hex digits");
    }
    Ok(hex)
}

/// An OCI platform (`os/architecture[/variant]`), in the spec's field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    pub fn from_target(platform: &str) -> anyhow::Result<Platform> {
        let p = crate::targets::parse_platform(platform)?;
        Ok(Platform { architecture: p.architecture, os: p.os, variant: p.variant })
    }

    /// `linux/arm64` / `linux/arm/v7`: the platform as cross/targets.toml and the tools write it.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// `linux-arm64` / `linux-arm-v7`: how a platform appears in a ref name or tag.
    pub fn slug(&self) -> String {
        self.name().replace('/', "-")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// OCI 1.1: what an artifact manifest holds (on referrer descriptors).
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none", default)]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// Bytes together with their descriptor: what we digest is exactly what we write and push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            descriptor: Descriptor {
                media_type: media_type.into(),
                digest: sha256_digest(&bytes),
                size: bytes.len() as u64,
                artifact_type: None,
                platform: None,
                annotations: BTreeMap::new(),
            },
            bytes,
        }
    }

    /// Serialises a document compactly and wraps it.
    pub fn json<T: Serialize>(media_type: &str, doc: &T) -> anyhow::Result<Blob> {
        Ok(Blob::new(media_type, serde_json::to_vec(doc)?))
    }
}

/// The image configuration (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    pub config: RuntimeConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Vec::is_empty", default)]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", skip_serializing_if = "Vec::is_empty", default)]
    pub cmd: Vec<String>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub created: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
}

/// An image manifest (`application/vnd.oci.image.manifest.v1+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    /// OCI 1.1: the artifact's type (a referrer's; images leave it out).
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none", default)]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// OCI 1.1: the manifest this one refers to (what a signature or attestation is about).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (`application/vnd.oci.image.index.v1+json`); also the layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// RFC 3339 UTC (`1970-01-01T00:00:00Z`) of seconds since the epoch, without a date library.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A tag (and ref name) from free text: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; `+` (semver build
/// metadata) becomes `_` as Helm does, anything else outside the set becomes `-`.
pub fn tag_safe(s: &str) -> String {
    let mut t: String = s
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            '+' => '_',
            _ => '-',
        })
        .collect();
    if t.starts_with(['.', '-']) {
        t.insert(0, '_');
    }
    t.truncate(128);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn tags() {
        assert_eq!(tag_safe("thick-0.1.0+g37b3abda4572-dirty"), "thick-0.1.0_g37b3abda4572-dirty");
        assert_eq!(tag_safe("-x/y"), "_-x-y");
        assert_eq!(tag_safe(&"a".repeat(200)).len(), 128);
    }

    #[test]
    fn digests() {
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(digest_hex(&sha256_digest(b"x")).is_ok());
        assert!(digest_hex("sha256:../../etc/passwd").is_err());
        assert!(digest_hex("sha512:00").is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn platforms_follow_the_targets_table() {
        let p = Platform::from_target("linux/arm64").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"architecture":"arm64","os":"linux"}"#);
        assert_eq!(p.slug(), "linux-arm64");
        assert_eq!(Platform::from_target("linux/arm/v7").unwrap().slug(), "linux-arm-v7");
    }
}
