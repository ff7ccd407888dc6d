/* pvbox ring-0 monitor: owns the real IDT, TSS and SYSCALL entry points inside the VM.
 *
 * The guest kernel runs in ring 3 (as a 64-bit PV kernel does under Xen). Every trap,
 * system call and hypercall enters here and, in this first version, exits to the host
 * with one OUT instruction; the host (src/vcpu/) decides what Xen would do and resumes
 * the guest through `resume`, which first executes a list of privileged operations the
 * host queued (page-table writes, TLB flushes, CR3 loads, MSR writes, swapgs) and then
 * IRETQs to the guest. Page-table writes must be done from inside the guest, not by the
 * host writing guest memory, because KVM's shadow MMU only sees writes made by the guest
 * (docs/architecture.md, "Why page-table writes go through the monitor").
 *
 * Fixed offsets (src/monitor/layout.ts mirrors them):
 *   0x000 lstar_entry   0x010 cstar_entry   0x020 sysenter_entry   0x030 iret_only   0x040 resume
 *   0x0c0 resume_writes
 *   0x1000 + 16*v       IDT stub for vector v
 * Exit ports (the value of AL is meaningless):
 *   0x00-0xef  exception/interrupt `port`: [rsp] = the CPU's frame (error code first if it pushes one)
 *   0xf0 SYSCALL (64-bit)   0xf3 SYSCALL (compat)   0xf4 SYSENTER
 *   0xf1 vectors 0xf0-0xff: [rsp] = vector, [rsp+8] = error code, then the CPU's frame
 *   0xf2 resume list continues: the host refills the list and re-enters `resume`
 * Ring-0 instructions are emulated on PVM hosts (~2 us each), so the hot stubs are one OUT and
 * the resume without queued operations is one IRETQ (`iret_only`).
 * This file is built by scripts/build-monitor.mjs with the system assembler (GNU as).
 */
        .code64
        .text
        .globl monitor_start
monitor_start:

/* SYSCALL entry points. On PVM hosts a guest SYSCALL lands here without a privilege change
 * (the host's switcher handles the instruction), so this page is guest-executable and the
 * stubs do not rely on ring 0: UD2 raises #UD through the IDT, and the host recognises the
 * RIP (docs/architecture.md). On hosts where SYSCALL does enter ring 0, OUT exits directly. */
        .org 0x000
lstar_entry:
        ud2
        outb    %al, $0xf0
        ud2

        .org 0x010
cstar_entry:
        ud2
        outb    %al, $0xf3
        ud2

        .org 0x020
sysenter_entry:
        outb    %al, $0xf4
        ud2

/* iret_only: RSP points at an IRETQ frame; every register already holds the guest's value. */
        .org 0x030
iret_only:
        iretq

/* resume: RSP points at the host-written list
 *   { op, a, b }*  0  saved_rax saved_rcx saved_rdx  rip cs rflags rsp ss
 * Every op has three quadwords so the loop stays simple. */
        .org 0x040
resume:
1:      popq    %rax
        testq   %rax, %rax
        jz      9f
        popq    %rcx
        popq    %rdx
        cmpq    $1, %rax                /* OP_WRITE64: *(u64 *)a = b */
        jne     2f
        movq    %rdx, (%rcx)
        jmp     1b
2:      cmpq    $2, %rax                /* OP_INVLPG a */
        jne     3f
        invlpg  (%rcx)
        jmp     1b
3:      cmpq    $3, %rax                /* OP_WRITE_CR3 a */
        jne     4f
        movq    %rcx, %cr3
        jmp     1b
4:      cmpq    $4, %rax                /* OP_WRMSR msr a, value b */
        jne     5f
        movq    %rdx, %rax
        shrq    $32, %rdx
        wrmsr
        jmp     1b
5:      cmpq    $5, %rax                /* OP_XSETBV xcr a, value b */
        jne     6f
        movq    %rdx, %rax
        shrq    $32, %rdx
        xsetbv
        jmp     1b
6:      cmpq    $6, %rax                /* OP_SWAPGS */
        jne     7f
        swapgs
        jmp     1b
7:      cmpq    $7, %rax                /* OP_WRITE_CR0 a */
        jne     8f
        movq    %rcx, %cr0
        jmp     1b
8:      outb    %al, $0xf2              /* OP_CONTINUE (or unknown): back to the host */
        ud2
9:      popq    %rax
        popq    %rcx
        popq    %rdx
        iretq

/* resume_writes: the common list that only stores page-table entries, in fewer instructions:
 *   n  { address, value }*n  saved_rax saved_rcx saved_rdx  rip cs rflags rsp ss   (n >= 1) */
        .org 0x0c0
resume_writes:
        popq    %rcx
1:      popq    %rax
        popq    %rdx
        movq    %rdx, (%rax)
        decq    %rcx
        jnz     1b
        popq    %rax
        popq    %rcx
        popq    %rdx
        iretq

/* IDT stubs: the exit port is the vector; vectors 0xf0 and up push it and use port 0xf1. */
        .macro  stub vector
        .org    0x1000 + 16 * \vector
        .if \vector < 0xf0
        outb    %al, $\vector
        .else
        pushq   $0
        pushq   $\vector
        outb    %al, $0xf1
        .endif
        ud2
        .endm

        .altmacro
        .set    v, 0
        .rept   256
        stub    %v
        .set    v, v + 1
        .endr
        .org    0x2000
