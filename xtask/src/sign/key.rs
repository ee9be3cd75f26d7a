//! cosign's key files, made and read without cosign: `cosign.key` is a PEM block labelled
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign < 2 wrote `ENCRYPTED COSIGN PRIVATE KEY`; both are
//! read) around JSON `{"kdf":{"name":"scrypt","params":{"N","r","p"},"salt"},"cipher":{"name":
//! "nacl/secretbox","nonce"},"ciphertext"}` (go-securesystemslib's `encrypted` format): the
//! PKCS#8 DER of an ECDSA P-256 key sealed with NaCl secretbox under scrypt(password, salt).
//! `cosign.pub` is the SubjectPublicKeyInfo as a `PUBLIC KEY` PEM block, which openssl reads.
//!
//! Signatures are ECDSA P-256 with SHA-256, ASN.1 DER, as cosign makes them (ring does the
//! arithmetic). The file formats are plain functions; randomness comes from the caller.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use ring::rand::SecureRandom as _;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

pub const PRIVATE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const PRIVATE_LABELS: [&str; 2] = [PRIVATE_LABEL, "ENCRYPTED COSIGN PRIVATE KEY"];
pub const PUBLIC_LABEL: &str = "PUBLIC KEY";
/// scrypt's N = 2^16, r = 8, p = 1: what cosign writes today.
pub const SCRYPT_LOG_N: u8 = 16;
/// N = 2^15: cosign's older parameters, which it still reads (used for the throwaway development
/// key: an unoptimised `cargo xtask` spends seconds per 2^16 scrypt).
pub const SCRYPT_LOG_N_LEGACY: u8 = 15;

/// The DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).with_context(|| format!("{what} is not base64"))
}

/// A PEM block with 64-character lines (as Go's encoding/pem writes it).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The first PEM block with one of `labels`: (label, bytes).
pub fn pem_decode(text: &str, labels: &[&str]) -> anyhow::Result<(String, Vec<u8>)> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(i) = text.find(&begin) {
            let rest = &text[i + begin.len()..];
            let j = rest.find(&end).with_context(|| format!("no {end} line"))?;
            let body: String = rest[..j].split_whitespace().collect();
            return Ok((label.to_string(), unb64(&body, &format!("the {label} block"))?));
        }
    }
    bail!("no PEM block labelled {}", labels.join(" or "))
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn scrypt_key(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> anyhow::Result<[u8; 32]> {
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| anyhow::anyhow!("scrypt parameters: {e}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key).map_err(|e| anyhow::anyhow!("scrypt: {e}"))?;
    Ok(key)
}

/// `cosign.key` for a PKCS#8 key: sealed with `password`, the given salt and nonce.
pub fn seal(pkcs8: &[u8], password: &[u8], salt: &[u8; 32], nonce: &[u8; 24], log_n: u8) -> anyhow::Result<String> {
    let key = scrypt_key(password, salt, log_n, 8, 1)?;
    let boxed = crypto_secretbox::XSalsa20Poly1305::new(&key.into())
        .encrypt(nonce.into(), pkcs8)
        .map_err(|_| anyhow::anyhow!("secretbox sealing failed"))?;
    let doc = Sealed {
        kdf: Kdf { name: "scrypt".into(), params: ScryptParams { n: 1 << log_n, r: 8, p: 1 }, salt: b64(salt) },
        cipher: Cipher { name: "nacl/secretbox".into(), nonce: b64(nonce) },
        ciphertext: b64(&boxed),
    };
    Ok(pem_encode(PRIVATE_LABEL, &serde_json::to_vec(&doc)?))
}

/// The PKCS#8 key inside a `cosign.key`.
pub fn open(text: &str, password: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (label, json) = pem_decode(text, &PRIVATE_LABELS)?;
    let doc: Sealed =
        serde_json::from_slice(&json).with_context(|| format!("the {label} block is not cosign's JSON"))?;
    if doc.kdf.name != "scrypt" || doc.cipher.name != "nacl/secretbox" {
        bail!("unsupported key encryption {} + {} (want scrypt + nacl/secretbox)", doc.kdf.name, doc.cipher.name);
    }
    let ScryptParams { n, r, p } = doc.kdf.params;
    if !n.is_power_of_two() || !(1 << 10..=1 << 20).contains(&n) || !(1..=32).contains(&r) || !(1..=16).contains(&p) {
        bail!("implausible scrypt parameters N={n} r={r} p={p}");
    }
    let key = scrypt_key(password, &unb64(&doc.kdf.salt, "the salt")?, n.trailing_zeros() as u8, r, p)?;
    let nonce = unb64(&doc.cipher.nonce, "the nonce")?;
    if nonce.len() != 24 {
        bail!("the nonce has {} bytes, not 24", nonce.len());
    }
    crypto_secretbox::XSalsa20Poly1305::new(&key.into())
        .decrypt(nonce.as_slice().into(), unb64(&doc.ciphertext, "the ciphertext")?.as_slice())
        .map_err(|_| anyhow::anyhow!("wrong password (COSIGN_PASSWORD), or the key file is damaged"))
}

/// An ECDSA P-256 key that signs like cosign.
pub struct Signer {
    pair: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Signer {
    pub fn from_pkcs8(pkcs8: &[u8]) -> anyhow::Result<Signer> {
        let rng = ring::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|e| anyhow::anyhow!("not an ECDSA P-256 PKCS#8 key: {e}"))?;
        Ok(Signer { pair, rng })
    }

    /// A new key: the signer and its PKCS#8 bytes.
    pub fn generate() -> anyhow::Result<(Signer, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
        Ok((Signer::from_pkcs8(pkcs8.as_ref())?, pkcs8.as_ref().to_vec()))
    }

    /// ASN.1 DER ECDSA signature over SHA-256 of `msg`.
    pub fn sign(&self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.pair.sign(&self.rng, msg).map_err(|_| anyhow::anyhow!("signing failed"))?.as_ref().to_vec())
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> Vec<u8> {
        [&P256_SPKI_PREFIX[..], self.pair.public_key().as_ref()].concat()
    }

    pub fn public_pem(&self) -> String {
        pem_encode(PUBLIC_LABEL, &self.spki())
    }
}

/// A P-256 `PUBLIC KEY` PEM (cosign.pub) as SubjectPublicKeyInfo DER.
pub fn parse_public_pem(text: &str) -> anyhow::Result<Vec<u8>> {
    let (_, der) = pem_decode(text, &[PUBLIC_LABEL])?;
    if der.len() != P256_SPKI_PREFIX.len() + 65 || !der.starts_with(&P256_SPKI_PREFIX) {
        bail!("not an ECDSA P-256 public key (cosign's default; other key types are not supported)");
    }
    Ok(der)
}

/// Checks a DER signature over `msg` with a P-256 SubjectPublicKeyInfo.
pub fn verify(spki: &[u8], msg: &[u8], sig: &[u8]) -> anyhow::Result<()> {
    let point = spki.strip_prefix(&P256_SPKI_PREFIX[..]).context("not a P-256 SubjectPublicKeyInfo")?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(msg, sig)
        .map_err(|_| anyhow::anyhow!("the signature does not verify with this public key"))
}

/// Random bytes from the system.
pub fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(b)
}

/// Writes `cosign.key` (mode 0600) and `cosign.pub` into `dir`; refuses to overwrite.
pub fn generate_files(
    dir: &Path,
    password: &[u8],
    log_n: u8,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let (key_path, pub_path) = (dir.join("cosign.key"), dir.join("cosign.pub"));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!("{} exists; refusing to overwrite a key (move it away first)", p.display());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (signer, pkcs8) = Signer::generate()?;
    let sealed = seal(&pkcs8, password, &random()?, &random()?, log_n)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    std::io::Write::write_all(&mut f, sealed.as_bytes())?;
    std::fs::write(&pub_path, signer.public_pem())?;
    Ok((key_path, pub_path))
}

/// The signer of a `cosign.key`.
pub fn load(path: &Path, password: &[u8]) -> anyhow::Result<Signer> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the key {}", path.display()))?;
    Signer::from_pkcs8(&open(&text, password).with_context(|| format!("opening {}", path.display()))?)
        .with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that cosign generated with an empty password (sigstore-rs's test data,
    /// tests/data/keys/cosign_generated_encrypted_empty_private.key): our reader against the real writer.
    const COSIGN_MADE: &str = include_str!("../../tests/fixtures/cosign/cosign_generated_empty_password.key");

    #[test]
    fn a_key_cosign_made_opens_and_signs() {
        let pkcs8 = open(COSIGN_MADE, b"").unwrap();
        let s = Signer::from_pkcs8(&pkcs8).unwrap();
        let sig = s.sign(b"payload").unwrap();
        verify(&s.spki(), b"payload", &sig).unwrap();
        assert!(verify(&s.spki(), b"other", &sig).is_err());
        assert!(open(COSIGN_MADE, b"wrong").unwrap_err().to_string().contains("wrong password"));
    }

    #[test]
    fn seal_then_open_round_trips_and_the_format_is_cosigns() {
        let (s, pkcs8) = Signer::generate().unwrap();
        let pem = seal(&pkcs8, b"pw", &[7; 32], &[9; 24], 10).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let (_, json) = pem_decode(&pem, &[PRIVATE_LABEL]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["kdf"]["params"], serde_json::json!({"N": 1024, "r": 8, "p": 1}));
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        assert_eq!(open(&pem, b"pw").unwrap(), pkcs8);
        let again = Signer::from_pkcs8(&open(&pem, b"pw").unwrap()).unwrap();
        assert_eq!(again.spki(), s.spki());
        assert_eq!(parse_public_pem(&s.public_pem()).unwrap(), s.spki());
        assert!(parse_public_pem(&pem_encode(PUBLIC_LABEL, b"short")).is_err());
        let legacy = pem.replace("SIGSTORE", "COSIGN");
        assert_eq!(open(&legacy, b"pw").unwrap(), pkcs8);
    }
}
