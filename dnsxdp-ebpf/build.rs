/// The BPF build links with `bpf-linker`; rebuild when that binary changes.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // Packet headers sit at 2-byte aligned offsets. Without this LLVM splits every unaligned
    // 16/32/64-bit packet load and store into single bytes; the kernel allows unaligned
    // packet access on the architectures that matter. LLVM before 22 ignores the feature
    // with a warning.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    }
}
