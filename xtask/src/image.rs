//! `cargo xtask image`: the container image, with no registry. A minimal Debian root filesystem
//! made with debootstrap from the host's own Debian mirror (cached under target/image), imported
//! into podman as the base, and `deploy/container/Containerfile` building on it with the release
//! binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::{root, sh};

/// The base image the Containerfile builds on (its `BASE` argument).
const BASE: &str = "localhost/aiwatch-base";
/// Marks a finished root filesystem (debootstrap interrupted leaves none).
const DONE: &str = ".aiwatch-rootfs-done";

#[derive(clap::Args)]
pub struct Args {
    /// Image name.
    #[arg(long, default_value = "localhost/aiwatch:dev")]
    pub tag: String,
    /// Put this aiwatch binary in the image instead of building the release one.
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::require_root("cargo xtask image")?;
    let bin = match args.binary {
        Some(b) => b,
        None => crate::build()?,
    };
    let (mirror, suite) = (mirror()?, suite()?);
    let base = format!("{BASE}:{suite}");
    let dir = root().join("target/image");
    let rootfs = dir.join(format!("rootfs-{suite}"));
    if !rootfs.join(DONE).exists() {
        debootstrap(&rootfs, &suite, &mirror)?;
    }
    // The base is imported once per root filesystem: a newer rootfs replaces it.
    if !image_exists(&base) || newer(&rootfs.join(DONE), &dir.join("base-imported"))? {
        import(&rootfs, &base)?;
        std::fs::write(dir.join("base-imported"), &base).context("marking the base imported")?;
    }
    // The build context holds only the binary; layers are cached by content.
    let context = dir.join("context");
    std::fs::create_dir_all(&context).context("creating the build context")?;
    std::fs::copy(&bin, context.join("aiwatch")).with_context(|| format!("copying {}", bin.display()))?;
    sh(Command::new("podman")
        .args(["build", "--quiet", "--build-arg", &format!("BASE={base}"), "--tag", &args.tag, "--file"])
        .arg(root().join("deploy/container/Containerfile"))
        .arg(&context))?;
    eprintln!("xtask: image {} built ({base} + {})", args.tag, bin.display());
    Ok(())
}

/// A minimal root filesystem (`--variant=minbase`), built aside and renamed when complete.
fn debootstrap(rootfs: &Path, suite: &str, mirror: &str) -> anyhow::Result<()> {
    let tmp = rootfs.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(tmp.parent().context("rootfs has a parent")?)?;
    sh(Command::new("debootstrap").args(["--variant=minbase", suite]).arg(&tmp).arg(mirror))?;
    // What an image does not need: downloaded packages and package lists.
    for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = tmp.join(d);
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    std::fs::write(tmp.join(DONE), format!("{suite} {mirror}\n"))?;
    if rootfs.exists() {
        std::fs::remove_dir_all(rootfs).with_context(|| format!("removing {}", rootfs.display()))?;
    }
    std::fs::rename(&tmp, rootfs).context("moving the finished root filesystem in place")
}

/// `tar` of the root filesystem into `podman import`.
fn import(rootfs: &Path, base: &str) -> anyhow::Result<()> {
    eprintln!("xtask: $ tar -C {} -c --exclude ./{DONE} . | podman import - {base}", rootfs.display());
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "--exclude", &format!("./{DONE}"), "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let out = tar.stdout.take().context("tar's stdout")?;
    let status = Command::new("podman")
        .args(["import", "--quiet", "-", base])
        .stdin(out)
        .stdout(Stdio::null())
        .status()
        .context("cannot start podman import")?;
    let tar_status = tar.wait().context("waiting for tar")?;
    if !status.success() || !tar_status.success() {
        bail!("importing {} as {base} failed (tar {tar_status}, podman {status})", rootfs.display());
    }
    Ok(())
}

fn image_exists(name: &str) -> bool {
    Command::new("podman").args(["image", "exists", name]).status().is_ok_and(|s| s.success())
}

/// Whether `a` was modified after `b` (or `b` is missing).
fn newer(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let a = m(a).with_context(|| format!("reading {}", a.display()))?;
    Ok(m(b).map_or(true, |b| a > b))
}

/// The Debian mirror this host's apt uses (the one setup installs from), so the image needs no
/// other network access: the first `deb` source of the main archive.
fn mirror() -> anyhow::Result<String> {
    let mut texts: Vec<String> = std::fs::read_to_string("/etc/apt/sources.list").into_iter().collect();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        texts.extend(files.iter().filter_map(|f| std::fs::read_to_string(f).ok()));
    }
    mirror_in(&texts.join("\n")).context("no Debian mirror in /etc/apt/sources.list{,.d}")
}

/// The first main-archive URI (not `-security`) of one-line (`deb URI suite …`) or deb822
/// (`URIs: …`) sources.
fn mirror_in(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let l = l.trim();
            match l.strip_prefix("URIs:") {
                Some(uris) => uris.split_whitespace().next(),
                None => l.strip_prefix("deb ").and_then(|r| r.split_whitespace().find(|w| w.contains("://"))),
            }
        })
        .find(|u| u.contains("://") && !u.trim_end_matches('/').ends_with("-security"))
        .map(str::to_string)
}

/// This host's Debian release (`VERSION_CODENAME`): the image's userland matches the host's.
fn suite() -> anyhow::Result<String> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .context("no VERSION_CODENAME in /etc/os-release")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_either_source_format() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
        assert_eq!(mirror_in(deb822).as_deref(), Some("http://mirror.example/debian"));
        let one_line = "# deb http://old.example/debian bookworm main\n\
                        deb [signed-by=/k.gpg] http://ftp.example/debian bookworm main\n";
        assert_eq!(mirror_in(one_line).as_deref(), Some("http://ftp.example/debian"));
        assert_eq!(mirror_in("# nothing\n"), None);
    }
}
