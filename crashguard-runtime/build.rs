//! One name for the platforms where fatal signals are handled, so that the condition is written
//! once: Linux on x86_64 and aarch64, with glibc or musl (the stack walker and the stack switch
//! exist for those).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fatal_signals)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && (arch == "x86_64" || arch == "aarch64") {
        println!("cargo::rustc-cfg=fatal_signals");
    }
}
