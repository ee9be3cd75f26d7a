/* The libc-free shim's entry and system call on powerpc64le (ELFv2), where Rust 1.85 has no
   stable inline assembly. The kernel starts a process at _start with r12 = _start. */

    .abiversion 2
    .machine power8
    .text

    .globl _start
    .type _start,@function
_start:
0:  addis 2,12,.TOC.-0b@ha
    addi 2,2,.TOC.-0b@l
    .localentry _start,.-_start
    mr 3,1              /* the initial stack: argc, argv, envp */
    clrrdi 1,1,4        /* 16-byte aligned */
    li 0,0
    stdu 0,-32(1)       /* a minimal frame with a null back chain */
    bl shim_entry
    nop
    trap
    .size _start,.-_start

/* isize shim_syscall6(n, a0, a1, a2, a3, a4, a5): the error as a negative errno. */
    .globl shim_syscall6
    .type shim_syscall6,@function
shim_syscall6:
    mr 0,3
    mr 3,4
    mr 4,5
    mr 5,6
    mr 6,7
    mr 7,8
    mr 8,9
    sc
    bnslr+
    neg 3,3
    blr
    .size shim_syscall6,.-shim_syscall6

    .section .note.GNU-stack,"",@progbits
