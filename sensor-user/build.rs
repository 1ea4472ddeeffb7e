//! Builds the eBPF programs (crate `sensor-ebpf`) with aya-build and leaves the object in
//! `OUT_DIR/sensor-ebpf` for `include_bytes!`.
//!
//! `cargo check` and `cargo clippy` of the user side must work without bpf-linker: when it is
//! missing, or under clippy, or with `AYA_BUILD_SKIP=1`, an empty object is written instead and
//! the daemon refuses to start with a message saying how to build it properly.

use std::{env, fs, path::PathBuf, process::Command};

use anyhow::{anyhow, Context as _};

const EBPF_PACKAGE: &str = "sensor-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=RUSTC_WORKSPACE_WRAPPER");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join(EBPF_PACKAGE);

    if let Some(reason) = skip_reason() {
        println!("cargo:warning=eBPF programs not built ({reason}); the aiwatch binary will not run");
        fs::write(&object, b"").with_context(|| format!("writing {}", object.display()))?;
        return Ok(());
    }

    let cargo_metadata::Metadata { packages, .. } =
        cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: EBPF_PACKAGE, root_dir: root_dir.as_str(), ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}

fn skip_reason() -> Option<&'static str> {
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Some("AYA_BUILD_SKIP is set");
    }
    if env::var("RUSTC_WORKSPACE_WRAPPER").is_ok_and(|w| w.contains("clippy-driver")) {
        return Some("clippy run");
    }
    let found = Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        return Some("bpf-linker not found; `cargo xtask setup` installs it");
    }
    None
}
