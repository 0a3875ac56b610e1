//! For a guest's build script: link its binaries with guest.ld, at 1 MiB guest-physical with the PVH note.

use std::println;

/// The linker script, next to this crate's Cargo.toml.
const LINKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest.ld");

/// Prints the link arguments for the package's binaries when it is built
/// for the bare-metal target (host builds link as usual).
pub fn link_bins() {
    println!("cargo:rerun-if-changed={LINKER_SCRIPT}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{LINKER_SCRIPT}");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
        println!("cargo:rustc-link-arg-bins=--build-id=none");
    }
}
