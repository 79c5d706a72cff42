//! Links GCC's unwinder (libgcc_eh.a) into the module instead of depending on
//! libgcc_s.so.1. sshd and sudo do not load libgcc_s, so with the dependency every login
//! loaded and unloaded it along with the module (about 100 µs each time, see
//! NOTES-bench.md). The unwinder's symbols stay hidden inside the module, and no panic
//! crosses its boundary (the FFI guard catches them), so it never has to cooperate with
//! another unwinder in the process. libgcc_eh is under the GCC Runtime Library Exception.
//!
//! Placed among this crate's own native libraries, it comes before std's `-lgcc_s` on
//! the link line, so the linker takes every `_Unwind_*` from it and `--as-needed` drops
//! libgcc_s. Not under cargo-fuzz (`--cfg fuzzing`): its harness links C++ runtimes that
//! bring libgcc_s anyway.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let fuzzing = std::env::var_os("CARGO_CFG_FUZZING").is_some();
    if target.contains("-linux-gnu") && !fuzzing {
        println!("cargo::rustc-link-lib=static:-bundle=gcc_eh");
    }
}
