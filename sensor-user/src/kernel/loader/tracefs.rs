//! tracefs: mounting it, and checking the tracepoint record fields the programs read against
//! the kernel's `format` files before anything is attached.

use std::path::Path;

use anyhow::{bail, Context as _};
use sensor_common::tracepoints::Field;

/// Where tracefs is looked for, in order.
const MOUNTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn mounted() -> Option<&'static str> {
    MOUNTS.into_iter().find(|dir| Path::new(dir).join("events").is_dir())
}

/// Mounts tracefs if it is not mounted (aya finds tracepoint ids there). Someone else mounting
/// it at the same moment (another daemon, systemd) is success, not an error.
pub fn ensure() -> anyhow::Result<&'static str> {
    ensure_with(mounted, || {
        nix::mount::mount(
            Some("tracefs"),
            MOUNTS[0],
            Some("tracefs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
    })
}

/// [`ensure`] with the mounted check and the mount call given, so a test can play the race.
fn ensure_with(
    mounted: impl Fn() -> Option<&'static str>,
    mount: impl FnOnce() -> nix::Result<()>,
) -> anyhow::Result<&'static str> {
    if let Some(dir) = mounted() {
        return Ok(dir);
    }
    match (mount(), mounted()) {
        (Ok(()), _) => {
            tracing::info!("mounted tracefs on {}", MOUNTS[0]);
            Ok(MOUNTS[0])
        }
        // EBUSY: another process mounted it between the check and the mount.
        (Err(_), Some(dir)) => Ok(dir),
        (Err(e), None) => {
            Err(e).with_context(|| format!("tracefs is not mounted and mounting it on {} failed", MOUNTS[0]))
        }
    }
}

/// One `field:` line of a format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatField {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// Parses a tracepoint's `format` file: its `field:<decl>; offset:N; size:N; signed:N;` lines.
pub fn parse_format(text: &str) -> anyhow::Result<Vec<FormatField>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("field:")) {
        let mut decl = None;
        let (mut offset, mut size) = (None, None);
        for part in line.split(';').map(str::trim) {
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            bail!("malformed format line {line:?}");
        };
        // The name is the declaration's last word, without an array suffix: `char comm[16]`,
        // `const char * filename`, `__data_loc char[] filename`.
        let name = decl
            .split(|c: char| c.is_whitespace() || c == '*')
            .rfind(|w| !w.is_empty())
            .map(|w| w.split('[').next().unwrap_or(w))
            .filter(|w| !w.is_empty())
            .with_context(|| format!("no field name in {line:?}"))?;
        out.push(FormatField { name: name.to_string(), offset, size });
    }
    Ok(out)
}

/// Checks that the record has every field in `want` where the program reads it.
pub fn check_fields(format: &[FormatField], want: &[Field]) -> Result<(), String> {
    let mut wrong = Vec::new();
    for f in want {
        match format.iter().find(|k| k.name == f.name) {
            Some(k) if k.offset == f.offset && k.size == f.size => {}
            Some(k) => wrong.push(format!(
                "field {} is at offset {} size {} (the program reads offset {} size {})",
                f.name, k.offset, k.size, f.offset, f.size
            )),
            None => wrong
                .push(format!("no field {} (the program reads offset {} size {})", f.name, f.offset, f.size)),
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Reads and checks the format of `category/name` under tracefs `dir`.
pub fn check_tracepoint(dir: &str, category: &str, name: &str, want: &[Field]) -> anyhow::Result<()> {
    let path = Path::new(dir).join("events").join(category).join(name).join("format");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("tracepoint {category}/{name} does not exist on this kernel")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let format = parse_format(&text).with_context(|| format!("parsing {}", path.display()))?;
    check_fields(&format, want).map_err(|e| anyhow::anyhow!("{category}/{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use sensor_common::tracepoints::{sched_process_exec, sched_process_exit, sys};

    use super::*;

    #[test]
    fn a_mount_by_someone_else_in_between_is_success() {
        // Not mounted at the check; another daemon mounts it first, so ours fails with EBUSY.
        let calls = std::cell::Cell::new(0);
        let mounted = || {
            calls.set(calls.get() + 1);
            (calls.get() > 1).then_some(MOUNTS[0])
        };
        assert_eq!(ensure_with(mounted, || Err(nix::errno::Errno::EBUSY)).unwrap(), MOUNTS[0]);
        // A failure with nothing mounted afterwards is an error that says what failed.
        let e = ensure_with(|| None, || Err(nix::errno::Errno::EPERM)).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("mounting it on /sys/kernel/tracing failed") && msg.contains("EPERM"), "{msg}");
        assert_eq!(ensure_with(|| Some(MOUNTS[1]), || unreachable!()).unwrap(), MOUNTS[1]);
    }

    /// `sched_process_exit` before Linux 6.16 (no `group_dead`).
    const EXIT_6_12: &str = "name: sched_process_exit\nID: 310\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n\n\
        print fmt: \"comm=%s pid=%d prio=%d\", REC->comm, REC->pid, REC->prio\n";

    #[test]
    fn parses_names_offsets_and_sizes() {
        let f = parse_format(EXIT_6_12).unwrap();
        assert_eq!(f[2], FormatField { name: "comm".into(), offset: 8, size: 16 });
        assert_eq!(f.last().unwrap(), &FormatField { name: "prio".into(), offset: 28, size: 4 });
        let exec = parse_format(
            "\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
             \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
             \tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n",
        )
        .unwrap();
        assert_eq!(check_fields(&exec, sched_process_exec::READ), Ok(()));
        let open = parse_format("\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;\n").unwrap();
        assert_eq!(open[0].name, "filename");
    }

    #[test]
    fn a_missing_or_moved_field_is_named() {
        let f = parse_format(EXIT_6_12).unwrap();
        let e = check_fields(&f, &[sched_process_exit::GROUP_DEAD]).unwrap_err();
        assert!(e.contains("no field group_dead"), "{e}");
        let moved = parse_format("\tfield:int dfd;\toffset:24;\tsize:8;\tsigned:0;\n").unwrap();
        let e = check_fields(&moved, &[sys::openat::DFD]).unwrap_err();
        assert!(e.contains("field dfd is at offset 24 size 8 (the program reads offset 16 size 8)"), "{e}");
        assert!(parse_format("\tfield:int x;\toffset:;\n").is_err());
    }

    #[test]
    fn this_kernels_records_match_what_the_programs_read() {
        let dir = ensure().unwrap();
        check_tracepoint(dir, "syscalls", "sys_enter_openat", sys::openat::READ).unwrap();
        check_tracepoint(dir, "sched", "sched_process_exec", sched_process_exec::READ).unwrap();
        let e = check_tracepoint(dir, "syscalls", "sys_enter_nonesuch", &[]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
