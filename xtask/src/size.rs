//! Where a binary's bytes come from, for `cargo xtask bench size`: each sized symbol of an
//! unstripped build attributed to the crate that defines it (from its mangled name, v0 or
//! legacy; C symbols from the static glibc and libgcc go to one bucket), and the loaded sections.
//! Plain functions over the symbol table (`elf::symbols`); like cargo-bloat, an estimate:
//! generic code is counted where its mangled name says it lives.

use std::collections::BTreeMap;

use crate::elf::Symbol;

/// The bucket for symbols that are not Rust's (static glibc, libgcc, compiler-rt).
pub const C_CODE: &str = "[C: glibc, libgcc]";
/// Rust symbols whose crate the name does not say (a `str`/slice/tuple type's impl, a legacy
/// `<impl>` form we do not follow).
pub const UNATTRIBUTED: &str = "[Rust: unattributed]";

/// The crate a mangled Rust symbol belongs to ([`UNATTRIBUTED`] when the name does not say);
/// `None` for a C symbol.
pub fn crate_of(mangled: &str) -> Option<String> {
    if let Some(rest) = mangled.strip_prefix("_R") {
        return Some(v0_crate(rest.as_bytes()).unwrap_or_else(|| UNATTRIBUTED.to_string()));
    }
    let rest = mangled.strip_prefix("_ZN")?;
    let (len, after) = split_decimal(rest.as_bytes())?;
    let ident = std::str::from_utf8(after.get(..len)?).ok()?;
    // `<T as Trait>::f` is mangled `_$LT$T$u20$as$u20$Trait$GT$`: T's first path segment.
    let ident = ident.strip_prefix("_$LT$").or_else(|| ident.strip_prefix("$LT$")).unwrap_or(ident);
    let ident = ident.trim_start_matches("$RF$").trim_start_matches("$BP$");
    let end = ident.find("..").or_else(|| ident.find('$')).unwrap_or(ident.len());
    let name = &ident[..end];
    Some(if plausible_crate(name) { name.to_string() } else { UNATTRIBUTED.to_string() })
}

/// A crate name is an identifier; `const`, `mut`, `dyn` and a lone type parameter are not.
fn plausible_crate(name: &str) -> bool {
    let identifier = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let keyword = matches!(name, "const" | "mut" | "dyn");
    let type_parameter = name.len() == 1 && name.chars().all(|c| c.is_ascii_uppercase());
    identifier && !keyword && !type_parameter
}

/// Walks a v0 path to its crate root: `N<ns><path>`, `M<dis><impl-path><type>`,
/// `X<dis><impl-path><type><trait>`, `Y<type><trait>`, `I<path>...`, ending at `C<dis><ident>`.
fn v0_crate(mut s: &[u8]) -> Option<String> {
    // A vendor-specific instantiating-crate suffix may follow; we stop at the first crate root.
    loop {
        match *s.first()? {
            b'N' => s = s.get(2..)?,
            b'M' | b'X' => s = skip_disambiguator(&s[1..]),
            b'Y' | b'I' => s = &s[1..],
            b'C' => {
                let (len, after) = split_decimal(skip_disambiguator(&s[1..]))?;
                let after = after.strip_prefix(b"_").unwrap_or(after);
                return std::str::from_utf8(after.get(..len)?).ok().map(str::to_string);
            }
            // A type (e.g. `<&T as Trait>`, `<[T] as Trait>`): its element's path follows.
            b'R' | b'Q' | b'S' | b'A' | b'P' | b'O' => s = &s[1..],
            _ => return None,
        }
    }
}

fn skip_disambiguator(s: &[u8]) -> &[u8] {
    match s.strip_prefix(b"s") {
        Some(rest) => match rest.iter().position(|&c| c == b'_') {
            Some(end) => &rest[end + 1..],
            None => s,
        },
        None => s,
    }
}

fn split_decimal(s: &[u8]) -> Option<(usize, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let n = std::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
    Some((n, &s[digits..]))
}

/// Bytes of functions and of data objects per crate, largest first.
pub fn by_crate(symbols: &[Symbol]) -> Vec<(String, u64, u64)> {
    let mut map: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in symbols {
        let name = crate_of(&s.name).unwrap_or_else(|| C_CODE.to_string());
        let e = map.entry(name).or_default();
        if s.function {
            e.0 += s.size;
        } else {
            e.1 += s.size;
        }
    }
    let mut rows: Vec<(String, u64, u64)> = map.into_iter().map(|(k, (f, o))| (k, f, o)).collect();
    rows.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_and_legacy_names_are_attributed_to_their_crate() {
        // v0: a function in a module, an inherent impl, a trait impl, a generic instance.
        assert_eq!(crate_of("_RNvNtCs1234_4core3fmt5write").as_deref(), Some("core"));
        assert_eq!(crate_of("_RNvMs8_NtCsk3_3std4pathNtB5_10Components7as_path").as_deref(), Some("std"));
        assert_eq!(
            crate_of("_RNvXs_NtCs9_6multus4thickNtB4_6ClientNtNtCs1_4core5clone5Clone5clone").as_deref(),
            Some("multus")
        );
        assert_eq!(crate_of("_RINvNtCsab_5serde2de11deserializeNtCscd_6multus3PodEB4_").as_deref(), Some("serde"));
        assert_eq!(crate_of("_RNvCs5_6rustls4main.llvm.123").as_deref(), Some("rustls"));
        // Legacy (std's precompiled rlibs): a path, and a trait impl for a type.
        assert_eq!(crate_of("_ZN5alloc7raw_vec11finish_grow17h0123456789abcdefE").as_deref(), Some("alloc"));
        assert_eq!(
            crate_of("_ZN60_$LT$std..io..error..Error$u20$as$u20$core..fmt..Display$GT$3fmt17h1E").as_deref(),
            Some("std")
        );
        // Rust, but no crate in the name: a slice type's impl, a const pointer, a type parameter.
        assert_eq!(crate_of("_RNvXs_NtCs1_4coreSh5Debug3fmt").as_deref(), Some("core"));
        assert_eq!(crate_of("_RNvYShNtCs1_4core5Debug3fmt").as_deref(), Some(UNATTRIBUTED));
        assert_eq!(crate_of("_ZN35_$LT$$BP$const$u20$T$u20$as$u20$x$GT$3fmt17h1E").as_deref(), Some(UNATTRIBUTED));
        assert_eq!(crate_of("_ZN8_$LT$T$GT$3fmt17h1E").as_deref(), Some(UNATTRIBUTED));
        // C: glibc and libgcc.
        assert_eq!(crate_of("memcpy"), None);
        assert_eq!(crate_of("__libc_start_main"), None);
    }

    #[test]
    fn bytes_are_summed_per_crate_largest_first() {
        let sym = |name: &str, size, function| Symbol { name: name.into(), size, function };
        let rows = by_crate(&[
            sym("_RNvCs1_4core1a", 10, true),
            sym("malloc", 500, true),
            sym("_RNvCs1_4core1b", 30, false),
            sym("_RNvCs2_2h24send", 100, true),
        ]);
        assert_eq!(rows, vec![(C_CODE.to_string(), 500, 0), ("h2".to_string(), 100, 0), ("core".to_string(), 10, 30)]);
    }
}
