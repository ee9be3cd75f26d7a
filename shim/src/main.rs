//! The `multus-shim` process without libc: `_start` for each architecture, the heap and the
//! panic handler; the work is `shim::run`.

#![no_std]
#![no_main]

extern crate alloc;
extern crate shim_mem;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

use shim::sys;

/// The heap: one bump arena, never freed (the process lives for one command). Its pages cost
/// nothing until touched; a config, a request and a reply need a few hundred KiB, rotating a
/// 100 MB log ~1 MiB (it streams). More than this is an allocation failure, reported as a CNI
/// error by the panic handler.
const ARENA: usize = 64 << 20;

struct Bump {
    arena: UnsafeCell<[u8; ARENA]>,
    next: UnsafeCell<usize>,
}

// SAFETY: the shim has one thread.
unsafe impl Sync for Bump {}

// SAFETY: blocks are aligned, within the arena and never handed out twice.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one thread; `next` is only touched here and in `realloc`.
        let next = unsafe { &mut *self.next.get() };
        let base = self.arena.get() as usize;
        let start = (base + *next).next_multiple_of(layout.align());
        match (start - base).checked_add(layout.size()) {
            Some(end) if end <= ARENA => {
                *next = end;
                start as *mut u8
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: one thread. The last block is given back, so a buffer that grows and is
        // dropped in a loop does not eat the arena.
        let next = unsafe { &mut *self.next.get() };
        if ptr as usize + layout.size() == self.arena.get() as usize + *next {
            *next = ptr as usize - self.arena.get() as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let base = self.arena.get() as usize;
        // SAFETY: one thread.
        let next = unsafe { &mut *self.next.get() };
        // The last block grows or shrinks in place.
        if ptr as usize + layout.size() == base + *next && ptr as usize - base + new_size <= ARENA {
            *next = ptr as usize - base + new_size;
            return ptr;
        }
        // SAFETY: as GlobalAlloc::realloc's default: a new block, the old bytes copied.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

#[global_allocator]
static HEAP: Bump = Bump { arena: UnsafeCell::new([0; ARENA]), next: UnsafeCell::new(0) };

/// A panic (an allocation beyond the arena) still answers the runtime with a CNI error.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut msg = Msg([0; 512], 0);
    let _ = write!(msg, "multus-shim: {}", info.message());
    let _ = sys::write_all(1, br#"{"code":999,"msg":"#);
    let _ = sys::write_all(1, b"\"");
    for b in &msg.0[..msg.1] {
        let _ = match b {
            b'"' | b'\\' => sys::write_all(1, &[b'\\', *b]),
            0..0x20 => sys::write_all(1, b" "),
            _ => sys::write_all(1, &[*b]),
        };
    }
    let _ = sys::write_all(1, b"\"}\n");
    sys::exit(1)
}

/// The prebuilt `alloc` was compiled to unwind, so its code names the unwinder; with
/// `panic = "abort"` nothing ever unwinds, and these two only satisfy the linker.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    sys::exit(134)
}

/// ARM's EHABI names its personality routines in every function's unwind entry.
#[cfg(target_arch = "arm")]
#[unsafe(no_mangle)]
extern "C" fn __aeabi_unwind_cpp_pr0() {}

#[cfg(target_arch = "arm")]
#[unsafe(no_mangle)]
extern "C" fn __aeabi_unwind_cpp_pr1() {}

/// A fixed buffer to format the panic message into without allocating.
struct Msg([u8; 512], usize);

impl core::fmt::Write for Msg {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.0.len() - self.1);
        self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.1 += n;
        Ok(())
    }
}

/// Called by `_start` with the initial stack: argc, argv..., NULL, envp..., NULL.
#[unsafe(no_mangle)]
unsafe extern "C" fn shim_entry(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack holds argc, then argc argv pointers and a NULL, then the
    // environment pointers and a NULL; each points at a NUL-terminated string.
    let (argv, envp) = unsafe {
        let argc = *sp;
        let strings = |mut p: *const *const u8| {
            let mut v: Vec<&[u8]> = Vec::new();
            while !(*p).is_null() {
                let s = *p;
                let mut n = 0;
                while *s.add(n) != 0 {
                    n += 1;
                }
                v.push(core::slice::from_raw_parts(s, n));
                p = p.add(1);
            }
            v
        };
        (strings(sp.add(1) as *const *const u8), strings(sp.add(1 + argc + 1) as *const *const u8))
    };
    sys::exit(shim::run(&argv, &envp))
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor %rbp, %rbp",
    "mov %rsp, %rdi",
    "and $-16, %rsp",
    "call shim_entry",
    "ud2",
    options(att_syntax)
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "and sp, x0, #-16",
    "bl shim_entry",
    "brk #0",
);

#[cfg(target_arch = "arm")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "mov fp, #0",
    "mov lr, #0",
    "mov r0, sp",
    "bic sp, sp, #15",
    "bl shim_entry",
    "udf #0",
);

#[cfg(target_arch = "s390x")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "lgr %r2, %r15",
    "aghi %r15, -160",
    "xc 0(8,%r15), 0(%r15)",
    "brasl %r14, shim_entry",
    ".long 0",
);

// powerpc64: `_start` is in src/arch/ppc64le.S (build.rs), as `asm!` is not stable there.
