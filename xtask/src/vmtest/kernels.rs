//! Debian kernels for the matrix: resolved and downloaded through a private apt configuration
//! (the system's mirror, other suites, lists and cache under `target/vmtest/apt`; `/etc/apt` is
//! only read), extracted with `dpkg-deb -x` under `target/vmtest/kernels/<release>`.

use std::{
    cmp::Ordering,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _};

use crate::{display, sh};

/// The `--kernel` values.
pub const KEYS: [&str; 5] = ["5.10", "6.1", "6.12", "6.16", "7"];

/// Suites of the private sources.list (`-security` ones come from the security mirror).
const SUITES: [&str; 6] = ["bullseye", "bookworm", "bookworm-security", "trixie", "trixie-backports", "sid"];

/// Package lists younger than this are used as they are.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How a `--kernel` value maps to Debian package names: `<prefix><version-like><suffix>`.
struct Spec {
    key: &'static str,
    prefix: &'static str,
    suffix: &'static str,
    /// Debian >= 7.x splits the kernel into `linux-binary-unsigned-R` (image), `linux-modules-R`
    /// and `linux-base-R` (config, System.map): the image and modules are needed to boot.
    split: bool,
}

const SPECS: [Spec; 5] = [
    Spec { key: "5.10", prefix: "linux-image-5.10.0-", suffix: "-cloud-amd64-unsigned", split: false },
    Spec { key: "6.1", prefix: "linux-image-6.1.0-", suffix: "-cloud-amd64-unsigned", split: false },
    Spec { key: "6.12", prefix: "linux-image-6.12.", suffix: "+deb13-cloud-amd64-unsigned", split: false },
    Spec { key: "6.16", prefix: "linux-image-6.16.", suffix: "+deb13-cloud-amd64", split: false },
    Spec { key: "7", prefix: "linux-binary-unsigned-7.", suffix: "-cloud-amd64", split: true },
];

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The `--kernel` value.
    pub key: String,
    /// `uname -r` in the guest, e.g. `6.16.12+deb13-cloud-amd64`.
    pub release: String,
    /// The Debian package version, e.g. `6.16.12-1~bpo13+1` (the upstream version for the
    /// ABI-named 5.10 and 6.1 packages).
    pub package_version: String,
    pub packages: Vec<String>,
    pub image: PathBuf,
    /// `.../lib/modules/<release>` of the extracted packages.
    pub modules: PathBuf,
    /// The kernel's build config, when the packages ship it.
    pub config: Option<PathBuf>,
}

impl Kernel {
    /// The base directory depmod and modprobe take (`-b`/`-d`): `modules` is `<base>/lib/modules/<release>`.
    pub fn modules_base(&self) -> PathBuf {
        self.modules.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Private apt state under `dir`: the options that point apt at it and nowhere else.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn options(&self) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        [
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            "Dir::Etc::SourceParts=/dev/null".into(),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::Cache={}", d("cache")),
            "APT::Architectures=amd64".into(),
            "Acquire::Languages=none".into(),
            // Only the Packages indices are needed, not the AppStream metadata a system may
            // have enabled for every source.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            // Downloads go to a root-owned directory apt's `_apt` user cannot write.
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options());
        c
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join("updated")
    }

    /// Writes the private sources.list and runs `apt-get update` unless the lists are fresh
    /// (younger than a day and written for this sources.list).
    fn prepare(&self) -> anyhow::Result<()> {
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(self.dir.join(d))
                .with_context(|| format!("creating {}", self.dir.display()))?;
        }
        let (mirror, security) = system_mirrors()?;
        let sources: String = SUITES
            .iter()
            .map(|s| {
                let uri = if s.ends_with("-security") { &security } else { &mirror };
                format!("deb {uri} {s} main\n")
            })
            .collect();
        let list = self.dir.join("sources.list");
        if std::fs::read_to_string(&list).ok().as_deref() != Some(&sources) {
            std::fs::write(&list, &sources).with_context(|| format!("writing {}", list.display()))?;
            let _ = std::fs::remove_file(self.stamp());
        }
        let fresh = std::fs::metadata(self.stamp())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            eprintln!("xtask: vmtest: kernel package lists are less than a day old, not updated");
            return Ok(());
        }
        eprintln!("xtask: vmtest: updating the private package lists ({mirror}: {})", SUITES.join(", "));
        match sh(self.cmd("apt-get").args(["update", "-q"])) {
            Ok(()) => std::fs::write(self.stamp(), b"").context("writing the lists stamp"),
            // Offline, older lists still resolve the kernels already downloaded.
            Err(e) if self.has_lists() => {
                eprintln!("xtask: vmtest: warning: {e:#}; using the package lists there are");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn has_lists(&self) -> bool {
        std::fs::read_dir(self.dir.join("lists")).is_ok_and(|d| {
            d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = self.cmd("apt-cache");
        c.args(args).stderr(Stdio::null());
        let out = c.output().with_context(|| format!("running {}", display(&c)))?;
        if !out.status.success() {
            bail!("`{}` failed ({})", display(&c), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The candidate version of a real package (`pkgnames` also lists names that are only
    /// depended on, e.g. modules packages no suite still carries).
    fn version(&self, pkg: &str) -> Option<String> {
        let text = self.output(&["show", "--no-all-versions", pkg]).ok()?;
        if !text.lines().any(|l| l.starts_with("Filename: ")) {
            return None;
        }
        text.lines().find_map(|l| l.strip_prefix("Version: ")).map(str::to_string)
    }
}

/// The Debian archive and security archive the system's own apt sources use.
fn system_mirrors() -> anyhow::Result<(String, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let uris: Vec<String> =
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).flat_map(|t| source_uris(&t)).collect();
    let archive = |name: &str| {
        uris.iter()
            .find(|u| u.trim_end_matches('/').ends_with(name))
            .map(|u| u.trim_end_matches('/').to_string())
    };
    let Some(mirror) = archive("/debian") else {
        bail!("no Debian archive (…/debian) in the system's apt sources; cannot fetch kernels");
    };
    // deb.debian.org and most mirrors serve the security archive beside the main one.
    let security = archive("/debian-security").unwrap_or_else(|| format!("{mirror}-security"));
    Ok((mirror, security))
}

/// URIs of the enabled sources in a one-line (`deb [opts] URI suite…`) or deb822
/// (`URIs: …`) sources file.
fn source_uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("URIs:") {
            out.extend(rest.split_whitespace().map(str::to_string));
        } else if let Some(rest) = line.strip_prefix("deb ") {
            // Skip `[option=value ...]`, which may span several words.
            let mut in_opts = false;
            for w in rest.split_whitespace() {
                if w.starts_with('[') {
                    in_opts = true;
                }
                if in_opts {
                    in_opts = !w.ends_with(']');
                    continue;
                }
                out.push(w.to_string());
                break;
            }
        }
    }
    out.retain(|u| u.starts_with("http://") || u.starts_with("https://"));
    out
}

/// `1.2.3`, optionally `+debNN`: the part of a package name that varies.
fn version_like(s: &str) -> bool {
    let (v, deb) = match s.split_once("+deb") {
        Some((v, deb)) => (v, Some(deb)),
        None => (s, None),
    };
    let numeric = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit() || c == '.');
    numeric(v) && deb.is_none_or(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
}

/// Compares version-like strings as `sort -V` does: digit runs numerically, the rest bytewise.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The packages to download for `spec`, newest first among those the archive really has:
/// (release, package version, packages).
fn resolve(apt: &Apt, spec: &Spec) -> anyhow::Result<(String, String, Vec<String>)> {
    let names = apt.output(&["pkgnames", spec.prefix])?;
    let mut candidates: Vec<&str> = names
        .lines()
        .filter(|n| {
            n.strip_prefix(spec.prefix).and_then(|r| r.strip_suffix(spec.suffix)).is_some_and(version_like)
        })
        .collect();
    candidates.sort_by(|a, b| version_cmp(b, a));
    for name in candidates {
        let release = if spec.split {
            name.trim_start_matches("linux-binary-unsigned-").to_string()
        } else {
            name.trim_start_matches("linux-image-").trim_end_matches("-unsigned").to_string()
        };
        let mut packages = vec![name.to_string()];
        if spec.split {
            packages.push(format!("linux-modules-{release}"));
            packages.push(format!("linux-base-{release}"));
        }
        let versions: Option<Vec<String>> = packages.iter().map(|p| apt.version(p)).collect();
        if let Some(v) = versions {
            return Ok((release, v[0].clone(), packages));
        }
    }
    bail!("no package {}*{} in the archive (suites: {})", spec.prefix, spec.suffix, SUITES.join(", "))
}

/// Resolves, downloads (if not cached) and extracts the kernels for `keys`.
pub fn fetch(keys: &[String]) -> anyhow::Result<Vec<Kernel>> {
    let base = crate::root().join("target/vmtest");
    let apt = Apt { dir: base.join("apt") };
    apt.prepare()?;
    let debs = base.join("debs");
    std::fs::create_dir_all(&debs)?;
    let mut out = Vec::new();
    for key in keys {
        let spec = SPECS
            .iter()
            .find(|s| s.key == key)
            .with_context(|| format!("unknown kernel {key:?}; known: {}", KEYS.join(", ")))?;
        let (release, version, packages) =
            resolve(&apt, spec).with_context(|| format!("resolving kernel {key}"))?;
        let files = download(&apt, &debs, &packages)?;
        let dir = base.join("kernels").join(&release);
        extract(&files, &dir)?;
        let kernel = locate(key, &release, &version, packages, &dir)?;
        eprintln!("xtask: vmtest: kernel {key} -> {release} ({} {version})", kernel.packages.join(" + "));
        out.push(kernel);
    }
    Ok(out)
}

/// `apt-get download` what is not in `debs` yet; returns the .deb files.
fn download(apt: &Apt, debs: &Path, packages: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in packages {
        let version = apt.version(p).with_context(|| format!("{p} vanished from the package lists"))?;
        // apt-get download names files <package>_<version with ':' escaped>_<arch>.deb.
        let file = debs.join(format!("{p}_{}_amd64.deb", version.replace(':', "%3a")));
        if !file.exists() {
            sh(apt.cmd("apt-get").current_dir(debs).args(["download", "-q", p])).with_context(|| {
                format!("downloading {p} (stale lists? remove {} to refresh them)", apt.stamp().display())
            })?;
            if !file.exists() {
                bail!("apt-get download did not produce {}", file.display());
            }
        }
        files.push(file);
    }
    Ok(files)
}

/// Extracts `debs` into `dir` unless it already holds exactly these packages.
fn extract(debs: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
    let marker = dir.join(".vmtest-packages");
    let want: String =
        debs.iter().map(|d| format!("{}\n", d.file_name().unwrap_or_default().to_string_lossy())).collect();
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&want) {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    for deb in debs {
        sh(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir))?;
    }
    std::fs::write(&marker, want)?;
    Ok(())
}

/// Finds the image, modules and config in an extracted kernel: `boot/vmlinuz-R` and
/// `[usr/]lib/modules/R` up to 6.x, `usr/lib/modules/R/vmlinuz[.unsigned]` from 7.x.
fn locate(
    key: &str,
    release: &str,
    version: &str,
    packages: Vec<String>,
    dir: &Path,
) -> anyhow::Result<Kernel> {
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(release))
        .find(|p| p.join("modules.order").exists())
        .with_context(|| format!("no modules directory for {release} under {}", dir.display()))?;
    let image = [
        dir.join(format!("boot/vmlinuz-{release}")),
        modules.join("vmlinuz.unsigned"),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| format!("no kernel image for {release} under {}", dir.display()))?;
    let header = image_release(&image)?;
    if header != release {
        bail!("{} says it is {header:?}, its package {release:?}", image.display());
    }
    let config =
        [dir.join(format!("boot/config-{release}")), modules.join("config")].into_iter().find(|p| p.exists());
    Ok(Kernel {
        key: key.to_string(),
        release: release.to_string(),
        package_version: version.to_string(),
        packages,
        image,
        modules,
        config,
    })
}

/// The release string in a bzImage's header (the `kernel_version` field of the boot protocol:
/// an offset at 0x20e, from 0x200, to a NUL-terminated "release (builder) #…" string).
pub fn image_release(image: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let off = bytes.get(0x20e..0x210).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize + 0x200);
    let text = off.and_then(|o| bytes.get(o..(o + 256).min(bytes.len())));
    let Some(text) = text else { bail!("{} is not a bzImage", image.display()) };
    let s = String::from_utf8_lossy(text.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    s.split_whitespace()
        .next()
        .map(str::to_string)
        .with_context(|| format!("no version in {}", image.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_sort_v() {
        let mut v = vec!["6.16.3+deb13", "6.16.12+deb13", "7.2.13+deb14", "7.3.4+deb13", "7.10.1+deb13"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["6.16.3+deb13", "6.16.12+deb13", "7.2.13+deb14", "7.3.4+deb13", "7.10.1+deb13"]);
        assert_eq!(version_cmp("linux-image-5.10.0-9-x", "linux-image-5.10.0-32-x"), Ordering::Less);
    }

    #[test]
    fn package_names_match_their_spec() {
        let m = |spec: &Spec, name: &str| {
            name.strip_prefix(spec.prefix).and_then(|r| r.strip_suffix(spec.suffix)).is_some_and(version_like)
        };
        assert!(m(&SPECS[0], "linux-image-5.10.0-32-cloud-amd64-unsigned"));
        assert!(!m(&SPECS[0], "linux-image-5.10.0-32-cloud-amd64-dbg"));
        assert!(m(&SPECS[3], "linux-image-6.16.12+deb13-cloud-amd64"));
        assert!(!m(&SPECS[3], "linux-image-6.16.12+deb13-cloud-amd64-dbg"));
        assert!(!m(&SPECS[3], "linux-image-6.16.12+deb13-rt-amd64"));
        assert!(m(&SPECS[4], "linux-binary-unsigned-7.3.4+deb13-cloud-amd64"));
        assert!(m(&SPECS[4], "linux-binary-unsigned-7.2.13+deb14-cloud-amd64"));
    }

    #[test]
    fn sources_in_both_formats() {
        let one = "# deb http://old/debian x main\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main\n";
        assert_eq!(source_uris(one), ["http://m/debian"]);
        let deb822 =
            "Types: deb\n# http://snapshot/debian\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(source_uris(deb822), ["http://deb.debian.org/debian"]);
    }
}
