//! The little X.509 the per-node certificates need, as plain functions over bytes: a DER writer
//! and reader, the PKCS#10 certificate request the daemon sends (ECDSA P-256, subject
//! `O=system:multus, CN=system:multus:<node>`, as upstream's certificate manager makes it), the
//! parts of a request `cert-approver` judges (subject, attributes, a valid self-signature), and the
//! parts of an issued certificate the daemon checks (validity, subject, public key).
//!
//! Keys are generated and signatures made with ring (already in the tree through rustls).

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

use super::Error;

/// The organisation and common-name prefix of a multus node's client certificate (upstream's).
pub const ORGANIZATION: &str = "system:multus";
pub const COMMON_NAME_PREFIX: &str = "system:multus:";

/// DER contents of the object identifiers used here.
pub mod oid {
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
}

fn bad(what: &str) -> Error {
    Error::Config(format!("malformed {what}"))
}

// ---- DER writer ----

/// One DER element: tag, definite length, contents.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

/// A non-negative INTEGER from big-endian bytes (a leading zero added when the top bit is set).
pub fn integer(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut v = if trimmed.is_empty() { vec![0] } else { trimmed };
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], bytes].concat())
}

/// A Name of (attribute OID, UTF8String value) pairs, one RDN each, in the given order.
pub fn name(attrs: &[(&[u8], &str)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> =
        attrs.iter().map(|(o, v)| set(&[&seq(&[&tlv(0x06, o), &tlv(0x0c, v.as_bytes())])])).collect();
    let refs: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
    seq(&refs)
}

/// The SubjectPublicKeyInfo of an uncompressed P-256 point.
pub fn p256_spki(point: &[u8]) -> Vec<u8> {
    seq(&[&seq(&[&tlv(0x06, oid::EC_PUBLIC_KEY), &tlv(0x06, oid::P256)]), &bit_string(point)])
}

/// `-----BEGIN LABEL-----` armour, 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The DER of the first PEM block with `label`.
pub fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

// ---- DER reader ----

/// A cursor over DER elements.
#[derive(Clone, Copy)]
pub struct Der<'a>(pub &'a [u8]);

impl<'a> Der<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next element: (tag, contents, the whole element).
    pub fn element(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), Error> {
        let b = self.0;
        if b.len() < 2 {
            return Err(bad("DER (truncated)"));
        }
        let (len, hdr) = match b[1] {
            n if n < 0x80 => (n as usize, 2),
            0x81..=0x84 => {
                let k = (b[1] & 0x7f) as usize;
                if b.len() < 2 + k {
                    return Err(bad("DER (truncated length)"));
                }
                (b[2..2 + k].iter().fold(0usize, |a, x| (a << 8) | *x as usize), 2 + k)
            }
            _ => return Err(bad("DER (length form)")),
        };
        let end = hdr.checked_add(len).filter(|e| *e <= b.len()).ok_or_else(|| bad("DER (length past the end)"))?;
        self.0 = &b[end..];
        Ok((b[0], &b[hdr..end], &b[..end]))
    }

    /// The next element, which must have `tag`.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), Error> {
        let (t, c, all) = self.element()?;
        if t != tag {
            return Err(bad(what));
        }
        Ok((c, all))
    }
}

/// A Name's attributes as (OID contents, string value).
pub fn read_name(content: &[u8]) -> Result<Vec<(Vec<u8>, String)>, Error> {
    let mut out = Vec::new();
    let mut rdns = Der(content);
    while !rdns.is_empty() {
        let (set, _) = rdns.expect(0x31, "name (RDN)")?;
        let mut atvs = Der(set);
        while !atvs.is_empty() {
            let (atv, _) = atvs.expect(0x30, "name (attribute)")?;
            let mut d = Der(atv);
            let (o, _) = d.expect(0x06, "name (attribute type)")?;
            let (tag, v, _) = d.element()?;
            // UTF8String, PrintableString, IA5String, T61String
            if ![0x0c, 0x13, 0x16, 0x14].contains(&tag) {
                return Err(bad("name (attribute value type)"));
            }
            out.push((o.to_vec(), String::from_utf8(v.to_vec()).map_err(|_| bad("name (not UTF-8)"))?));
        }
    }
    Ok(out)
}

fn values(attrs: &[(Vec<u8>, String)], o: &[u8]) -> Vec<String> {
    attrs.iter().filter(|(k, _)| k == o).map(|(_, v)| v.clone()).collect()
}

// ---- keys and requests ----

/// A new ECDSA P-256 key (PKCS#8 DER).
pub fn new_key() -> Result<Vec<u8>, Error> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| Error::Config("cannot generate a P-256 key".into()))?;
    Ok(doc.as_ref().to_vec())
}

fn key_pair(pkcs8: &[u8]) -> Result<EcdsaKeyPair, Error> {
    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &SystemRandom::new())
        .map_err(|_| Error::Config("the per-node key is not a P-256 PKCS#8 key".into()))
}

/// The SubjectPublicKeyInfo (DER) of a PKCS#8 P-256 key.
pub fn public_key_info(pkcs8: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(p256_spki(key_pair(pkcs8)?.public_key().as_ref()))
}

/// ECDSA P-256 / SHA-256 signature (ASN.1 DER) of `msg`.
pub fn sign(pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = key_pair(pkcs8)?
        .sign(&SystemRandom::new(), msg)
        .map_err(|_| Error::Config("signing with the per-node key failed".into()))?;
    Ok(sig.as_ref().to_vec())
}

/// The certificate request (PKCS#10 DER) of a node: subject `O=system:multus,
/// CN=system:multus:<node>`, no attributes, signed with `pkcs8`.
pub fn node_request(node: &str, pkcs8: &[u8]) -> Result<Vec<u8>, Error> {
    let cn = format!("{COMMON_NAME_PREFIX}{node}");
    let subject = name(&[(oid::ORGANIZATION, ORGANIZATION), (oid::COMMON_NAME, &cn)]);
    let info = seq(&[&integer(&[0]), &subject, &public_key_info(pkcs8)?, &tlv(0xa0, &[])]);
    let sig = sign(pkcs8, &info)?;
    Ok(seq(&[&info, &seq(&[&tlv(0x06, oid::ECDSA_SHA256)]), &bit_string(&sig)]))
}

/// What a certificate request says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub common_names: Vec<String>,
    pub organizations: Vec<String>,
    /// Subject attributes other than CN and O.
    pub other_subject: usize,
    /// Attributes requested (e.g. extensionRequest with subject alternative names), by OID.
    pub attributes: Vec<Vec<u8>>,
    pub public_key_info: Vec<u8>,
}

/// Parses a PKCS#10 request and checks its self-signature (ECDSA P-256 or RSA with SHA-256).
pub fn parse_request(der: &[u8]) -> Result<Request, Error> {
    let (outer, _) = Der(der).expect(0x30, "certificate request")?;
    let mut d = Der(outer);
    let (info, info_all) = d.expect(0x30, "certificate request info")?;
    let (alg, _) = d.expect(0x30, "certificate request signature algorithm")?;
    let (sig, _) = d.expect(0x03, "certificate request signature")?;
    let mut i = Der(info);
    i.expect(0x02, "certificate request version")?;
    let (subject, _) = i.expect(0x30, "certificate request subject")?;
    let (spki, spki_all) = i.expect(0x30, "certificate request public key")?;
    let mut attributes = Vec::new();
    if !i.is_empty() {
        let (attrs, _) = i.expect(0xa0, "certificate request attributes")?;
        let mut a = Der(attrs);
        while !a.is_empty() {
            let (one, _) = a.expect(0x30, "certificate request attribute")?;
            attributes.push(Der(one).expect(0x06, "certificate request attribute type")?.0.to_vec());
        }
    }
    let (alg_oid, _) = Der(alg).expect(0x06, "signature algorithm")?;
    let mut k = Der(spki);
    let (key_alg, _) = k.expect(0x30, "public key algorithm")?;
    let (key_bits, _) = k.expect(0x03, "public key bits")?;
    let (key_oid, _) = Der(key_alg).expect(0x06, "public key algorithm")?;
    let key = key_bits.get(1..).ok_or_else(|| bad("public key bits"))?;
    let sig = sig.get(1..).ok_or_else(|| bad("signature bits"))?;
    let algorithm: &dyn signature::VerificationAlgorithm = match (alg_oid, key_oid) {
        (oid::ECDSA_SHA256, oid::EC_PUBLIC_KEY) => &signature::ECDSA_P256_SHA256_ASN1,
        (oid::RSA_SHA256, oid::RSA_ENCRYPTION) => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(Error::Config("certificate request: unsupported key or signature algorithm".into())),
    };
    signature::UnparsedPublicKey::new(algorithm, key)
        .verify(info_all, sig)
        .map_err(|_| Error::Config("certificate request: its signature does not verify".into()))?;
    let names = read_name(subject)?;
    Ok(Request {
        common_names: values(&names, oid::COMMON_NAME),
        organizations: values(&names, oid::ORGANIZATION),
        other_subject: names.iter().filter(|(o, _)| o != oid::COMMON_NAME && o != oid::ORGANIZATION).count(),
        attributes,
        public_key_info: spki_all.to_vec(),
    })
}

/// What the daemon checks of an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub common_names: Vec<String>,
    pub public_key_info: Vec<u8>,
}

/// Reads validity, subject and public key out of a certificate (DER).
pub fn parse_certificate(der: &[u8]) -> Result<Issued, Error> {
    let (outer, _) = Der(der).expect(0x30, "certificate")?;
    let (tbs, _) = Der(outer).expect(0x30, "certificate body")?;
    let mut t = Der(tbs);
    let (mut tag, _, _) = t.element()?;
    if tag == 0xa0 {
        tag = t.element()?.0; // the serial after the version
    }
    if tag != 0x02 {
        return Err(bad("certificate (serial)"));
    }
    t.expect(0x30, "certificate (signature algorithm)")?;
    t.expect(0x30, "certificate (issuer)")?;
    let (validity, _) = t.expect(0x30, "certificate (validity)")?;
    let (subject, _) = t.expect(0x30, "certificate (subject)")?;
    let (_, spki_all) = t.expect(0x30, "certificate (public key)")?;
    let mut v = Der(validity);
    let (nb_tag, nb, _) = v.element()?;
    let (na_tag, na, _) = v.element()?;
    Ok(Issued {
        not_before: time(nb_tag, nb)?,
        not_after: time(na_tag, na)?,
        common_names: values(&read_name(subject)?, oid::COMMON_NAME),
        public_key_info: spki_all.to_vec(),
    })
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as seconds since the epoch.
fn time(tag: u8, v: &[u8]) -> Result<i64, Error> {
    let s = std::str::from_utf8(v).map_err(|_| bad("certificate time"))?;
    let digits = s.strip_suffix('Z').ok_or_else(|| bad("certificate time (not UTC)"))?;
    let full = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().map_err(|_| bad("certificate time"))?;
            format!("{}{digits}", if yy >= 50 { "19" } else { "20" })
        }
        (0x18, 14) => digits.to_string(),
        _ => return Err(bad("certificate time")),
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("certificate time"));
    }
    let n = |a: usize, b: usize| full[a..b].parse::<i64>().unwrap_or(0);
    let days = days_from_civil(n(0, 4), n(4, 6), n(6, 8));
    Ok(days * 86_400 + n(8, 10) * 3600 + n(10, 12) * 60 + n(12, 14))
}

/// Days since 1970-01-01 (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// `YYMMDDHHMMSSZ` (UTCTime) of seconds since the epoch (years 1950..2049).
pub fn utc_time(secs: i64) -> Vec<u8> {
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::logging::civil_from_days(secs.div_euclid(86_400));
    let s = format!("{:02}{m:02}{d:02}{:02}{:02}{:02}Z", y % 100, rem / 3600, rem % 3600 / 60, rem % 60);
    tlv(0x17, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_request_parses_back_and_verifies() {
        let key = new_key().unwrap();
        let der = node_request("worker-1", &key).unwrap();
        let r = parse_request(&der).unwrap();
        assert_eq!(r.common_names, ["system:multus:worker-1"]);
        assert_eq!(r.organizations, ["system:multus"]);
        assert_eq!((r.other_subject, r.attributes.len()), (0, 0));
        assert_eq!(r.public_key_info, public_key_info(&key).unwrap());
        // One flipped byte of the subject breaks the signature.
        let mut tampered = der.clone();
        let at = tampered.windows(8).position(|w| w == b"worker-1").unwrap();
        tampered[at] = b'W';
        assert!(parse_request(&tampered).unwrap_err().to_string().contains("does not verify"));
        assert!(parse_request(&der[..der.len() - 3]).is_err());
        let pem_text = pem("CERTIFICATE REQUEST", &der);
        assert_eq!(pem_block(&pem_text, "CERTIFICATE REQUEST").unwrap(), der);
    }

    /// openssl, an independent reader, accepts the request and its signature.
    #[test]
    fn openssl_verifies_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let key = new_key().unwrap();
        let path = dir.path().join("r.pem");
        std::fs::write(&path, pem("CERTIFICATE REQUEST", &node_request("n1", &key).unwrap())).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["req", "-in", path.to_str().unwrap(), "-noout", "-verify", "-subject", "-nameopt", "compat"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("verify OK"), "{text}");
        assert!(
            text.contains("subject=O=system:multus, CN=system:multus:n1")
                || text.contains("subject=/O=system:multus/CN=system:multus:n1"),
            "{text}"
        );
    }

    #[test]
    fn times_round_trip() {
        for secs in [0i64, 951_782_400, 1_764_892_800, 2_524_607_999] {
            let t = utc_time(secs);
            assert_eq!(time(t[0], &t[2..]).unwrap(), secs, "{}", String::from_utf8_lossy(&t));
        }
        assert_eq!(time(0x18, b"20261205101500Z").unwrap(), time(0x17, b"261205101500Z").unwrap());
        assert!(time(0x17, b"2612051015Z").is_err());
    }

    #[test]
    fn long_lengths() {
        let big = vec![7u8; 300];
        let e = tlv(0x04, &big);
        assert_eq!(&e[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut d = Der(&e);
        assert_eq!(d.element().unwrap().1, &big[..]);
        assert!(Der(&[0x30, 0x05, 1]).element().is_err());
    }
}
