//! `cargo xtask install`: the release binary, the hardened systemd unit, the default config
//! (kept if present), the man page and shell completions, under a prefix or staged in a destdir.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};

use crate::root;

/// Copies `bytes` to `dest` with `mode`, creating directories; an existing `dest` is kept when
/// `keep` (a config the admin edited).
fn put(dest: &Path, bytes: &[u8], mode: u32, keep: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if keep && dest.exists() {
        eprintln!("xtask: install: {} exists, kept", dest.display());
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))?;
    eprintln!("xtask: install: {}", dest.display());
    Ok(())
}

fn output_of(bin: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {} {args:?}", bin.display()))?;
    if !out.status.success() {
        bail!("{} {args:?} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Installs `bin` and what goes with it under `prefix` (inside `destdir` when staging).
pub fn install(bin: &Path, prefix: &Path, destdir: Option<&Path>) -> anyhow::Result<()> {
    let at = |p: &Path| match destdir {
        Some(d) => d.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    };
    let binary = std::fs::read(bin)?;
    put(&at(&prefix.join("bin/aiwatch")), &binary, 0o755, false)?;
    let unit = std::fs::read_to_string(root().join("deploy/systemd/aiwatch.service"))?
        .replace("/usr/local/bin/aiwatch", &prefix.join("bin/aiwatch").display().to_string());
    put(&at(Path::new("/etc/systemd/system/aiwatch.service")), unit.as_bytes(), 0o644, false)?;
    put(&at(Path::new("/etc/aiwatch/config.toml")), &output_of(bin, &["config"])?, 0o644, true)?;
    put(&at(&prefix.join("share/man/man1/aiwatch.1")), &output_of(bin, &["man"])?, 0o644, false)?;
    for (shell, path) in [
        ("bash", "share/bash-completion/completions/aiwatch"),
        ("zsh", "share/zsh/site-functions/_aiwatch"),
        ("fish", "share/fish/vendor_completions.d/aiwatch.fish"),
    ] {
        put(&at(&prefix.join(path)), &output_of(bin, &["completions", shell])?, 0o644, false)?;
    }
    if destdir.is_none() {
        eprintln!(
            "xtask: install: done; start it with: systemctl daemon-reload && systemctl enable --now aiwatch"
        );
    }
    Ok(())
}
