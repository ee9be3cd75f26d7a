//! Deterministic image layers: a set of files and directories becomes the same tar and the same
//! gzip bytes on every run (reproducible-builds.org archive rules).
//!
//! - every parent directory is emitted explicitly; entries are sorted by path components (so a
//!   parent always precedes its children and the order never depends on the file system);
//! - ustar headers, mtime = SOURCE_DATE_EPOCH, uid = gid = 0, empty user and group names, the mode
//!   the image description names (never the umask);
//! - gzip from `flate2` (the `miniz_oxide` backend pinned by Cargo.lock) at level `GZIP_LEVEL`,
//!   header mtime 0, no file name, OS byte 255. The compressed digest depends on that backend and
//!   level; the diff_id (sha256 of the tar) does not;
//! - a file with the same bytes and mode as one before it in the layer is a hard link to that one
//!   (the thick image ships `install_multus` at two paths, upstream's; the layer carries it once);
//! - symbolic links (the debug variants' `/bin/sh` → `busybox`) are stored as they are named.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Context, bail};

use super::oci::Blob;
use super::oci::{MT_LAYER_GZIP, sha256_digest};

/// The pinned gzip level (the same as `gzip`'s default, so the bench baseline is comparable).
pub const GZIP_LEVEL: u32 = 6;
/// Directories we create implicitly (parents of files).
pub const DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content<'a> {
    Dir,
    File(&'a [u8]),
    /// A symbolic link to this target.
    Symlink(&'a str),
}

/// One entry of a layer; `path` is absolute in the image (`/usr/src/multus-cni/bin/passthru`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub path: String,
    pub mode: u32,
    pub content: Content<'a>,
}

/// A built layer: the compressed blob plus what the config needs about its tar.
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Blob,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    pub tar_size: u64,
    /// Paths in the tar, in order (for summaries and tests).
    pub paths: Vec<String>,
}

/// The components of an absolute, normalised image path; refuses `..`, `.`, `//` and relatives.
pub fn components(path: &str) -> anyhow::Result<Vec<&str>> {
    let rest = path.strip_prefix('/').with_context(|| format!("image path {path:?} is not absolute"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if rest.is_empty() || parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        bail!("image path {path:?} is not a normalised absolute path (no //, . or .., no trailing /)");
    }
    if path.bytes().any(|b| b == 0 || b == b'\\') {
        bail!("image path {path:?} contains NUL or backslash");
    }
    Ok(parts)
}

/// Entries with their parent directories added, validated and sorted.
fn normalise<'a>(entries: &[Entry<'a>]) -> anyhow::Result<Vec<(Vec<String>, u32, Content<'a>)>> {
    let mut all: BTreeMap<Vec<String>, (u32, Content<'a>)> = BTreeMap::new();
    for e in entries {
        if e.mode & !0o7777 != 0 {
            bail!("image path {}: mode {:o} has bits outside 07777", e.path, e.mode);
        }
        let parts: Vec<String> = components(&e.path)?.into_iter().map(String::from).collect();
        if let Some((old_mode, old)) = all.get(&parts) {
            // A directory named twice with the same mode is harmless; anything else is ambiguous.
            if !(old == &Content::Dir && e.content == Content::Dir && *old_mode == e.mode) {
                bail!("image path {} is listed twice", e.path);
            }
        }
        all.insert(parts, (e.mode, e.content.clone()));
    }
    let keys: Vec<Vec<String>> = all.keys().cloned().collect();
    for k in keys {
        for n in 1..k.len() {
            let parent = k[..n].to_vec();
            match all.get(&parent) {
                Some((_, Content::File(_) | Content::Symlink(_))) => {
                    bail!("image path /{} is a file and a directory", parent.join("/"))
                }
                Some(_) => {}
                None => {
                    all.insert(parent, (DIR_MODE, Content::Dir));
                }
            }
        }
    }
    // BTreeMap order over component vectors: parents first, byte-wise within a directory.
    Ok(all.into_iter().map(|(k, (m, c))| (k, m, c)).collect())
}

/// The uncompressed tar of a layer.
pub fn tar(entries: &[Entry], mtime: u64) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let mut b = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    let mut first: std::collections::HashMap<(&[u8], u32), String> = std::collections::HashMap::new();
    for (parts, mode, content) in normalise(entries)? {
        let mut h = tar::Header::new_ustar();
        let (name, data): (String, &[u8]) = match content {
            Content::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                (format!("{}/", parts.join("/")), &[])
            }
            Content::File(bytes) if !bytes.is_empty() && first.contains_key(&(bytes, mode)) => {
                let target = &first[&(bytes, mode)];
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(target)
                    .with_context(|| format!("link target /{target} does not fit a ustar header"))?;
                (parts.join("/"), &[])
            }
            Content::File(bytes) => {
                h.set_entry_type(tar::EntryType::Regular);
                first.insert((bytes, mode), parts.join("/"));
                (parts.join("/"), bytes)
            }
            Content::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(target).with_context(|| format!("link target {target} does not fit a ustar header"))?;
                (parts.join("/"), &[])
            }
        };
        h.set_path(&name).with_context(|| format!("image path /{name} does not fit a ustar header"))?;
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data)?;
        paths.push(format!("/{name}"));
    }
    Ok((b.into_inner()?, paths))
}

/// gzip with the pinned level and a header free of time, name and host.
pub fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 2), flate2::Compression::new(GZIP_LEVEL));
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

/// Builds one layer from entries (order of `entries` does not matter). `image::assemble` does
/// the same in two steps (tar, then compression of each distinct tar once, in parallel);
/// `pause` builds its one layer with this.
pub fn build(entries: &[Entry], mtime: u64) -> anyhow::Result<Layer> {
    let (tar, paths) = tar(entries, mtime)?;
    let diff_id = sha256_digest(&tar);
    let blob = Blob::new(MT_LAYER_GZIP, gzip(&tar)?);
    Ok(Layer { blob, diff_id, tar_size: tar.len() as u64, paths })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn file<'a>(path: &str, mode: u32, data: &'a [u8]) -> Entry<'a> {
        Entry { path: path.into(), mode, content: Content::File(data) }
    }

    #[test]
    fn same_input_same_digests_in_any_order() {
        let a = [file("/usr/src/multus-cni/bin/passthru", 0o755, b"ELF..."), file("/thin_entrypoint", 0o755, b"x")];
        let b = [a[1].clone(), a[0].clone()];
        let (la, lb) = (build(&a, 1_700_000_000).unwrap(), build(&b, 1_700_000_000).unwrap());
        assert_eq!(la.blob.descriptor.digest, lb.blob.descriptor.digest);
        assert_eq!(la.diff_id, lb.diff_id);
        // The mtime is part of the content.
        assert_ne!(build(&a, 1).unwrap().diff_id, la.diff_id);
        // A mode change is too.
        let c = [file("/usr/src/multus-cni/bin/passthru", 0o555, b"ELF..."), a[1].clone()];
        assert_ne!(build(&c, 1_700_000_000).unwrap().diff_id, la.diff_id);
    }

    #[test]
    fn parents_first_sorted_with_fixed_headers() {
        let entries = [
            file("/usr/src/multus-cni/bin/passthru", 0o755, b"p"),
            file("/usr/src/multus-cni/LICENSE", 0o644, b"l"),
            file("/install_multus", 0o755, b"i"),
            Entry { path: "/tmp".into(), mode: 0o1777, content: Content::Dir },
        ];
        let layer = build(&entries, 1234).unwrap();
        assert_eq!(
            layer.paths,
            [
                "/install_multus",
                "/tmp/",
                "/usr/",
                "/usr/src/",
                "/usr/src/multus-cni/",
                "/usr/src/multus-cni/LICENSE",
                "/usr/src/multus-cni/bin/",
                "/usr/src/multus-cni/bin/passthru"
            ]
        );
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&layer.blob.bytes[..]).read_to_end(&mut tar_bytes).unwrap();
        assert_eq!(sha256_digest(&tar_bytes), layer.diff_id);
        assert_eq!(tar_bytes.len() as u64, layer.tar_size);
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 1234));
            assert_eq!(h.username().unwrap(), Some(""));
            assert!(h.as_ustar().is_some());
            let want = match e.path().unwrap().to_str().unwrap() {
                "tmp/" => 0o1777,
                "usr/src/multus-cni/LICENSE" => 0o644,
                _ => 0o755,
            };
            assert_eq!(h.mode().unwrap(), want, "{:?}", e.path());
        }
        // gzip header: magic, deflate, no flags, mtime 0, OS 255.
        assert_eq!(&layer.blob.bytes[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn symbolic_links_are_stored_as_named_and_cannot_be_parents() {
        let link = |path: &str, target: &'static str| Entry {
            path: path.into(),
            mode: 0o777,
            content: Content::Symlink(target),
        };
        let entries = [file("/bin/busybox", 0o755, b"bb"), link("/bin/sh", "busybox"), link("/bin/cp", "busybox")];
        let (bytes, paths) = tar(&entries, 1).unwrap();
        assert_eq!(paths, ["/bin/", "/bin/busybox", "/bin/cp", "/bin/sh"]);
        let mut ar = tar::Archive::new(&bytes[..]);
        let links: Vec<(String, String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type() == tar::EntryType::Symlink)
            .map(|e| {
                let target = e.link_name().unwrap().unwrap().display().to_string();
                (e.path().unwrap().display().to_string(), target, e.header().size().unwrap())
            })
            .collect();
        assert_eq!(links, [("bin/cp".into(), "busybox".into(), 0), ("bin/sh".into(), "busybox".into(), 0)]);
        let under_a_link = [link("/bin", "usr/bin"), file("/bin/x", 0o755, b"x")];
        assert!(tar(&under_a_link, 1).unwrap_err().to_string().contains("a file and a directory"));
    }

    #[test]
    fn a_repeated_file_is_a_hard_link_to_its_first_path() {
        let bin = b"\x7fELF same bytes";
        let entries =
            [file("/usr/bin/a", 0o755, bin), file("/a", 0o755, bin), file("/b", 0o644, bin), file("/c", 0o755, b"x")];
        let (tar, paths) = tar(&entries, 1).unwrap();
        assert_eq!(paths, ["/a", "/b", "/c", "/usr/", "/usr/bin/", "/usr/bin/a"]);
        let mut ar = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((path, e.header().entry_type(), link, data.len()));
        }
        use tar::EntryType::{Directory, Link, Regular};
        assert_eq!(
            seen,
            [
                ("a".into(), Regular, None, bin.len()),
                // Another mode: its own copy (a hard link shares the inode and so the mode).
                ("b".into(), Regular, None, bin.len()),
                ("c".into(), Regular, None, 1),
                ("usr/".into(), Directory, None, 0),
                ("usr/bin/".into(), Directory, None, 0),
                ("usr/bin/a".into(), Link, Some("a".into()), 0),
            ]
        );
    }

    #[test]
    fn refuses_ambiguous_or_unsafe_paths() {
        let err = |e: &[Entry]| build(e, 0).unwrap_err().to_string();
        assert!(err(&[file("/a", 0o644, b"1"), file("/a", 0o644, b"2")]).contains("listed twice"));
        assert!(err(&[file("/a", 0o644, b"1"), file("/a/b", 0o644, b"2")]).contains("file and a directory"));
        assert!(err(&[file("/a/../etc/passwd", 0o644, b"")]).contains("normalised"));
        assert!(err(&[file("relative", 0o644, b"")]).contains("not absolute"));
        assert!(err(&[file("/a//b", 0o644, b"")]).contains("normalised"));
        assert!(err(&[file("/a", 0o100644, b"")]).contains("mode"));
    }
}
