//! Uprobe trace events in tracefs (`uprobe_events`): defining them, and removing those a
//! daemon that did not stop cleanly left.

use std::{fs::OpenOptions, io::Write as _, path::Path};

use anyhow::Context as _;

/// Removes uprobe events left by an earlier run that did not stop cleanly.
pub(super) fn remove_stale(uprobe_events: &Path) {
    let Ok(text) = std::fs::read_to_string(uprobe_events) else { return };
    for line in text.lines() {
        let Some(name) = line.split_whitespace().next().and_then(|t| t.split_once(':')).map(|(_, n)| n)
        else {
            continue;
        };
        // aiwatch_<pid>/...: only groups of daemons that are gone.
        let owner = name
            .strip_prefix("aiwatch_")
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = append(uprobe_events, &format!("-:{name}"));
        }
    }
}

pub(super) fn append(uprobe_events: &Path, line: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(uprobe_events)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// Defines one uprobe event and returns its trace event id.
pub(super) fn define(
    uprobe_events: &Path,
    tracefs: &str,
    name: &str,
    libc: &Path,
    off: u64,
    ret: bool,
) -> anyhow::Result<u64> {
    let kind = if ret { 'r' } else { 'p' };
    append(uprobe_events, &format!("{kind}:{name} {}:0x{off:x}", libc.display()))
        .with_context(|| format!("defining {name} in {}", uprobe_events.display()))?;
    let id_file = Path::new(tracefs).join("events").join(name).join("id");
    let id = std::fs::read_to_string(&id_file).with_context(|| format!("reading {}", id_file.display()))?;
    id.trim().parse().with_context(|| format!("bad id in {}", id_file.display()))
}
