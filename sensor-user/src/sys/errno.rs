//! Errno names, for records and logs.

/// Symbolic name of the errno in a negative syscall return (`-2` is `ENOENT`).
pub fn errno_name(ret: i64) -> Option<String> {
    if ret >= 0 {
        return None;
    }
    let raw = ret.checked_neg().and_then(|v| i32::try_from(v).ok()).unwrap_or(i32::MAX);
    Some(match nix::errno::Errno::from_raw(raw) {
        nix::errno::Errno::UnknownErrno => format!("E{raw}"),
        // Debug of nix's Errno is the symbolic name.
        e => format!("{e:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(-2).as_deref(), Some("ENOENT"));
        assert_eq!(errno_name(-13).as_deref(), Some("EACCES"));
        assert_eq!(errno_name(3), None);
        assert_eq!(errno_name(-100000).as_deref(), Some("E100000"));
        assert_eq!(errno_name(i64::MIN).as_deref(), Some("E2147483647"));
    }
}
