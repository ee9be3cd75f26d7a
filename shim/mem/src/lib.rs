//! The C memory functions (`memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`, `strlen`) that
//! compiled Rust calls, for the libc-free shim. `no_builtins` keeps LLVM from turning these loops
//! back into calls to themselves. They move a machine word at a time (unaligned loads and stores,
//! which every platform we build for allows), then the bytes that are left.

#![no_std]
#![no_builtins]

use core::ptr::{read_unaligned, write_unaligned};

const W: usize = core::mem::size_of::<usize>();

/// # Safety
/// As C's `memcpy`: `n` bytes readable at `s`, writable at `d`, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    unsafe {
        while i + W <= n {
            write_unaligned(d.add(i) as *mut usize, read_unaligned(s.add(i) as *const usize));
            i += W;
        }
        while i < n {
            *d.add(i) = *s.add(i);
            i += 1;
        }
    }
    d
}

/// # Safety
/// As C's `memmove`: `n` bytes readable at `s`, writable at `d`; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    unsafe {
        if (d as usize) <= (s as usize) || (d as usize) >= (s as usize) + n {
            // Forward is safe: each word is read before anything after it is written.
            let mut i = 0;
            while i + W <= n {
                write_unaligned(d.add(i) as *mut usize, read_unaligned(s.add(i) as *const usize));
                i += W;
            }
            while i < n {
                *d.add(i) = *s.add(i);
                i += 1;
            }
        } else {
            let mut i = n;
            while i >= W {
                i -= W;
                write_unaligned(d.add(i) as *mut usize, read_unaligned(s.add(i) as *const usize));
            }
            while i > 0 {
                i -= 1;
                *d.add(i) = *s.add(i);
            }
        }
    }
    d
}

/// # Safety
/// As C's `memset`: `n` bytes writable at `d`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
    let word = usize::from_ne_bytes([c as u8; W]);
    let mut i = 0;
    unsafe {
        while i + W <= n {
            write_unaligned(d.add(i) as *mut usize, word);
            i += W;
        }
        while i < n {
            *d.add(i) = c as u8;
            i += 1;
        }
    }
    d
}

/// # Safety
/// As C's `memcmp`: `n` bytes readable at `a` and at `b`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    unsafe {
        // Whole words while they are equal; the first differing word is compared bytewise.
        while i + W <= n && read_unaligned(a.add(i) as *const usize) == read_unaligned(b.add(i) as *const usize) {
            i += W;
        }
        while i < n {
            let (x, y) = (*a.add(i), *b.add(i));
            if x != y {
                return x as i32 - y as i32;
            }
            i += 1;
        }
    }
    0
}

/// # Safety
/// As C's `bcmp`: `n` bytes readable at `a` and at `b`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// As C's `strlen`: `s` points at a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}
