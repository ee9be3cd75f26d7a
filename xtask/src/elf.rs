//! ELF inspection for the build's verification: class, byte order, machine, static linking,
//! reading a named section (the embedded dependency list), and the section and symbol tables
//! `bench size` attributes bytes with. Plain functions over bytes.

use anyhow::{Context, bail};

use crate::targets::{Endian, Target};

const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const DT_NEEDED: u64 = 1;
const ET_DYN: u16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub class: u8,
    pub endian: Endian,
    pub machine: u16,
    /// Has a PT_INTERP: needs a dynamic loader on the node.
    pub interp: bool,
    /// Names shared libraries (DT_NEEDED).
    pub needs_libs: bool,
    /// ET_DYN: position-independent (a static-pie relocates itself at every start).
    pub position_independent: bool,
}

/// Human names for the machines we might meet.
pub fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "i386",
        21 => "ppc64 (ppc64le)",
        22 => "s390 (s390x)",
        40 => "arm",
        62 => "x86-64 (amd64)",
        183 => "aarch64 (arm64)",
        243 => "riscv",
        _ => "unknown",
    }
}

struct Reader<'a> {
    b: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> anyhow::Result<[u8; N]> {
        let s = self.b.get(at..at + N).with_context(|| format!("truncated ELF at offset {at}"))?;
        Ok(s.try_into().expect("length checked"))
    }
    fn u16(&self, at: usize) -> anyhow::Result<u16> {
        let a = self.bytes::<2>(at)?;
        Ok(if self.big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    fn u32(&self, at: usize) -> anyhow::Result<u32> {
        let a = self.bytes::<4>(at)?;
        Ok(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn u64(&self, at: usize) -> anyhow::Result<u64> {
        let a = self.bytes::<8>(at)?;
        Ok(if self.big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
    /// A native-width word (32- or 64-bit ELF).
    fn word(&self, at: usize, is64: bool) -> anyhow::Result<u64> {
        if is64 { self.u64(at) } else { self.u32(at).map(u64::from) }
    }
}

fn reader(b: &[u8]) -> anyhow::Result<(Reader<'_>, bool)> {
    if b.len() < 52 || &b[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    let is64 = match b[4] {
        1 => false,
        2 => true,
        c => bail!("unknown ELF class {c}"),
    };
    let big = match b[5] {
        1 => false,
        2 => true,
        d => bail!("unknown ELF data encoding {d}"),
    };
    Ok((Reader { b, big }, is64))
}

pub fn parse(b: &[u8]) -> anyhow::Result<ElfInfo> {
    let (r, is64) = reader(b)?;
    let e_type = r.u16(16)?;
    let machine = r.u16(18)?;
    let (phoff, phentsize, phnum) = if is64 {
        (r.u64(32)? as usize, r.u16(54)? as usize, r.u16(56)? as usize)
    } else {
        (r.u32(28)? as usize, r.u16(42)? as usize, r.u16(44)? as usize)
    };
    let (mut interp, mut needs_libs) = (false, false);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = r.u32(ph)?;
        if p_type == PT_INTERP {
            interp = true;
        }
        if p_type == PT_DYNAMIC {
            let (off, size) =
                if is64 { (r.u64(ph + 8)?, r.u64(ph + 32)?) } else { (r.u32(ph + 4)? as u64, r.u32(ph + 16)? as u64) };
            let ent = if is64 { 16 } else { 8 };
            for j in 0..(size / ent) {
                let at = (off + j * ent) as usize;
                let tag = r.word(at, is64)?;
                if tag == 0 {
                    break;
                }
                if tag == DT_NEEDED {
                    needs_libs = true;
                }
            }
        }
    }
    Ok(ElfInfo {
        class: if is64 { 64 } else { 32 },
        endian: if r.big { Endian::Big } else { Endian::Little },
        machine,
        interp,
        needs_libs,
        position_independent: e_type == ET_DYN,
    })
}

/// Checks a built file against its target; the error names the file and both architectures.
pub fn verify(path: &str, bytes: &[u8], t: &Target) -> anyhow::Result<()> {
    let info = parse(bytes).with_context(|| format!("{path}: cannot read as ELF"))?;
    if info.machine != t.elf_machine {
        bail!(
            "{path}: built for {} (ELF machine {}), but target {} ({}) needs {} (ELF machine {})",
            machine_name(info.machine),
            info.machine,
            t.arch,
            t.platform,
            machine_name(t.elf_machine),
            t.elf_machine
        );
    }
    if info.class != t.elf_class || info.endian != t.elf_endian {
        bail!(
            "{path}: ELF is {}-bit {:?}-endian, but target {} ({}) needs {}-bit {:?}-endian",
            info.class,
            info.endian,
            t.arch,
            t.platform,
            t.elf_class,
            t.elf_endian
        );
    }
    if info.interp || info.needs_libs {
        bail!("{path}: dynamically linked (interpreter or shared libraries), but node binaries must be static");
    }
    if info.position_independent {
        bail!(
            "{path}: position-independent (ET_DYN), but node binaries are linked position-dependent (ET_EXEC): \
             a static-pie relocates itself at every exec"
        );
    }
    Ok(())
}

/// One section header: its name and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub offset: usize,
    pub size: usize,
    /// Allocated: loaded into memory (SHF_ALLOC), so part of what a process maps.
    pub alloc: bool,
    /// sh_link: for a symbol table, the index of its string table.
    pub link: usize,
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;

/// Every section header, in file order.
pub fn sections(b: &[u8]) -> anyhow::Result<Vec<Section>> {
    let (r, is64) = reader(b)?;
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (r.u64(40)? as usize, r.u16(58)? as usize, r.u16(60)? as usize, r.u16(62)? as usize)
    } else {
        (r.u32(32)? as usize, r.u16(46)? as usize, r.u16(48)? as usize, r.u16(50)? as usize)
    };
    if shnum == 0 {
        return Ok(Vec::new());
    }
    let raw = |i: usize| -> anyhow::Result<(u32, u32, u64, usize, usize, usize)> {
        let at = shoff + i * shentsize;
        let (name, kind) = (r.u32(at)?, r.u32(at + 4)?);
        if is64 {
            Ok((
                name,
                kind,
                r.u64(at + 8)?,
                r.u64(at + 24)? as usize,
                r.u64(at + 32)? as usize,
                r.u32(at + 40)? as usize,
            ))
        } else {
            let flags = u64::from(r.u32(at + 8)?);
            Ok((name, kind, flags, r.u32(at + 16)? as usize, r.u32(at + 20)? as usize, r.u32(at + 24)? as usize))
        }
    };
    let (_, _, _, str_off, str_size, _) = raw(shstrndx)?;
    let names = b.get(str_off..str_off + str_size).context("section name table out of bounds")?;
    (0..shnum)
        .map(|i| {
            let (n, kind, flags, offset, size, link) = raw(i)?;
            Ok(Section {
                name: c_string(names, n as usize).context("section name out of bounds")?,
                kind,
                offset,
                size,
                alloc: flags & SHF_ALLOC != 0,
                link,
            })
        })
        .collect()
}

fn c_string(table: &[u8], at: usize) -> Option<String> {
    let rest = table.get(at..)?;
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The contents of the section called `name`, if present.
pub fn section<'a>(b: &'a [u8], name: &str) -> anyhow::Result<Option<&'a [u8]>> {
    let Some(s) = sections(b)?.into_iter().find(|s| s.name == name) else {
        return Ok(None);
    };
    if s.kind == SHT_NOBITS {
        return Ok(Some(&[]));
    }
    Ok(Some(b.get(s.offset..s.offset + s.size).context("section out of bounds")?))
}

/// A function or data object from the symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The raw (mangled) name.
    pub name: String,
    pub size: u64,
    pub function: bool,
}

/// The sized functions and objects of `.symtab` (empty for a stripped file). Aliases at one
/// address are counted once.
pub fn symbols(b: &[u8]) -> anyhow::Result<Vec<Symbol>> {
    let (r, is64) = reader(b)?;
    let all = sections(b)?;
    let Some(tab) = all.iter().find(|s| s.kind == SHT_SYMTAB) else {
        return Ok(Vec::new());
    };
    let strs = all.get(tab.link).context("symbol table names a missing string table")?;
    let names = b.get(strs.offset..strs.offset + strs.size).context("symbol names out of bounds")?;
    let entsize = if is64 { 24 } else { 16 };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for i in 0..tab.size / entsize {
        let at = tab.offset + i * entsize;
        let name = r.u32(at)? as usize;
        let (info, value, size) = if is64 {
            (r.bytes::<1>(at + 4)?[0], r.u64(at + 8)?, r.u64(at + 16)?)
        } else {
            (r.bytes::<1>(at + 12)?[0], u64::from(r.u32(at + 4)?), u64::from(r.u32(at + 8)?))
        };
        let kind = info & 0xf;
        // STT_OBJECT = 1, STT_FUNC = 2.
        if size == 0 || !(kind == 1 || kind == 2) || !seen.insert(value) {
            continue;
        }
        out.push(Symbol { name: c_string(names, name).unwrap_or_default(), size, function: kind == 2 });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ET_EXEC: u16 = 2;

    /// A tiny 64-bit ELF header with one program header (no real code): enough to exercise the
    /// checks for each architecture without a cross toolchain.
    pub fn fixture(machine: u16, big: bool, interp: bool) -> Vec<u8> {
        fixture_of_type(machine, big, interp, ET_EXEC)
    }

    fn fixture_of_type(machine: u16, big: bool, interp: bool, e_type: u16) -> Vec<u8> {
        fixture_of(machine, big, interp, e_type, true)
    }

    /// An ELF64 or ELF32 header with one program header (`PT_INTERP` when `interp`, else `PT_LOAD`).
    fn fixture_of(machine: u16, big: bool, interp: bool, e_type: u16, is64: bool) -> Vec<u8> {
        // (header size, program header size; offsets of e_phoff, e_phentsize, e_phnum)
        let (eh, ph, phoff_at, phentsize_at, phnum_at) = if is64 { (64, 56, 32, 54, 56) } else { (52, 32, 28, 42, 44) };
        let mut b = vec![0u8; eh + ph];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = if is64 { 2 } else { 1 };
        b[5] = if big { 2 } else { 1 };
        b[6] = 1;
        let mut put = |at: usize, v: u64, width: usize| {
            let bytes = if big { v.to_be_bytes() } else { v.to_le_bytes() };
            let bytes = if big { &bytes[8 - width..] } else { &bytes[..width] };
            b[at..at + width].copy_from_slice(bytes);
        };
        put(16, e_type.into(), 2);
        put(18, machine.into(), 2);
        put(phoff_at, eh as u64, if is64 { 8 } else { 4 });
        put(phentsize_at, ph as u64, 2);
        put(phnum_at, 1, 2);
        put(eh, if interp { PT_INTERP } else { 1 }.into(), 4);
        b
    }

    fn targets() -> Vec<Target> {
        crate::targets::load(&crate::project::root()).unwrap()
    }

    #[test]
    fn each_target_accepts_its_own_header() {
        for t in targets() {
            let big = t.elf_endian == Endian::Big;
            let f = fixture_of(t.elf_machine, big, false, ET_EXEC, t.elf_class == 64);
            verify("f", &f, &t).unwrap_or_else(|e| panic!("{}: {e}", t.arch));
        }
        // A 64-bit arm binary is not an arm/v7 one.
        let v7 = targets().into_iter().find(|t| t.elf_class == 32).unwrap();
        let e = verify("f", &fixture(v7.elf_machine, false, false), &v7).unwrap_err().to_string();
        assert!(e.contains("64-bit") && e.contains("needs 32-bit"), "{e}");
    }

    #[test]
    fn a_wrong_machine_names_the_file_and_both_architectures() {
        let all = targets();
        let arm = all.iter().find(|t| t.arch == "arm64").unwrap();
        let e = verify("artifacts/linux-arm64/passthru", &fixture(62, false, false), arm).unwrap_err().to_string();
        assert_eq!(
            e,
            "artifacts/linux-arm64/passthru: built for x86-64 (amd64) (ELF machine 62), but target arm64 (linux/arm64) needs aarch64 (arm64) (ELF machine 183)"
        );
    }

    #[test]
    fn wrong_byte_order_dynamic_linking_and_pie_are_refused() {
        let all = targets();
        let s390 = all.iter().find(|t| t.arch == "s390x").unwrap();
        assert!(verify("f", &fixture(22, false, false), s390).unwrap_err().to_string().contains("Little-endian"));
        let amd = &all[0];
        assert!(verify("f", &fixture(62, false, true), amd).unwrap_err().to_string().contains("dynamically linked"));
        let pie = fixture_of_type(62, false, false, ET_DYN);
        assert!(verify("f", &pie, amd).unwrap_err().to_string().contains("position-independent (ET_DYN)"));
        assert!(parse(b"#!/bin/sh\n").is_err());
        assert!(parse(&fixture(62, false, false)[..40]).is_err());
    }

    #[test]
    fn reads_sections_of_the_running_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(section(&me, ".text").unwrap().is_some_and(|s| !s.is_empty()));
        assert!(section(&me, ".dep-v0-nope").unwrap().is_none());
        let names: Vec<String> = sections(&me).unwrap().into_iter().filter(|s| s.alloc).map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == ".text") && names.iter().any(|n| n == ".rodata"), "{names:?}");
        // A test binary keeps its symbols: this very function is among them, as a sized function.
        let syms = symbols(&me).unwrap();
        let me_fn = syms.iter().find(|s| s.name.contains("reads_sections_of_the_running_binary")).unwrap();
        assert!(me_fn.function && me_fn.size > 0);
        let info = parse(&me).unwrap();
        assert_eq!((info.class, info.machine), (64, 62));
    }
}
