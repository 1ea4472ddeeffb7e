//! aiwatch kernel programs: process tracking, path syscalls, sockets and environment reads, on
//! tracepoints and libc uprobes only (no kprobes, fentry or LSM needed). They read tracepoint
//! fields and user memory; kernel structs only at offsets the loader found in BTF (there is no
//! CO-RE in Rust eBPF).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod emit;
mod helpers;
mod maps;
mod pack;
mod probes;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic; this is never called.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// On the host this crate only compiles (for clippy); the real build targets bpfel.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
