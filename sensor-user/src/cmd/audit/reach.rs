//! Before any run: can the run user reach the command? What the runs will exec (the command, the
//! interpreter of its `#!` line, a known interpreter's script argument) is listed here as walks
//! of path prefixes; `runner` checks each walk in a child set up exactly like a run (same mounts,
//! same credentials) with `faccessat(AT_EACCESS)` — the kernel's own answer, not a
//! reimplementation of permission rules — and a blocked walk becomes one error that names the
//! user, the path and the first component that stops it.

use std::{
    ffi::{CStr, CString},
    os::unix::ffi::OsStrExt as _,
    path::{Component, Path, PathBuf},
};

use super::isolate::RunUser;

/// What the runs need of a file: to execute it, or to read it (a script).
pub const EXEC: libc::c_int = libc::X_OK;
pub const READ: libc::c_int = libc::R_OK;

/// Something the runs will open or exec, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `the command`, `the interpreter of /x/agent.js (#! line)`, `the script node runs`.
    pub what: String,
    /// Alternatives: the target is reachable if one of them is (an `env` lookup on PATH).
    pub paths: Vec<PathBuf>,
    /// `EXEC`, `READ` or both.
    pub mode: libc::c_int,
    /// The runs' PATH when the target is a name looked up there.
    pub searched: Option<String>,
}

/// Interpreters whose first non-option argument is a script they read.
const INTERPRETERS: [&str; 13] = [
    "node", "nodejs", "bun", "deno", "tsx", "ts-node", "python", "python2", "python3", "ruby", "perl",
    "bash", "sh",
];

fn is_interpreter(name: &str) -> bool {
    // python3.12 is python3.
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    INTERPRETERS.contains(&name) || INTERPRETERS.contains(&base)
}

/// The script a known interpreter is given: its first non-option argument (after `run` for bun
/// and deno). None when the program comes from an option (`-e`, `-c`, `-m`) or there is none.
pub fn script_argument<'a>(interpreter: &str, args: &'a [String]) -> Option<&'a str> {
    let name = Path::new(interpreter).file_name()?.to_str()?;
    if !is_interpreter(name) {
        return None;
    }
    // Options whose program is inline or a module, and options that take a value.
    const NO_SCRIPT: [&str; 7] = ["-e", "--eval", "-p", "--print", "-c", "-m", "-"];
    const WITH_VALUE: [&str; 8] =
        ["-r", "--require", "--import", "--loader", "-W", "-X", "--input-type", "-C"];
    let mut it = args.iter();
    let mut subcommand_seen = false;
    while let Some(a) = it.next() {
        if NO_SCRIPT.contains(&a.as_str()) {
            return None;
        }
        if a == "--" {
            return it.next().map(String::as_str);
        }
        if WITH_VALUE.contains(&a.as_str()) {
            it.next();
            continue;
        }
        // A cluster of short options with an inline program (`bash -lc`, `python -Bc`): no
        // script. Unsure means no check, never a false error.
        if a.len() > 2 && a.starts_with('-') && !a.starts_with("--") && a.contains(['c', 'e', 'm', 'p']) {
            return None;
        }
        if a.starts_with('-') {
            continue;
        }
        if matches!(name, "bun" | "deno") && a == "run" && !subcommand_seen {
            subcommand_seen = true;
            continue;
        }
        return Some(a);
    }
    None
}

/// A `#!` line's interpreter and its argument words, from a file's first bytes.
pub fn shebang(head: &[u8]) -> Option<(String, Vec<String>)> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace().map(str::to_string);
    let interpreter = words.next()?;
    Some((interpreter, words.collect()))
}

/// The program `env` runs from a `#!/usr/bin/env [-S] [-i] [NAME=VALUE…] program` line.
pub fn env_program(args: &[String]) -> Option<&str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-u" | "--unset" | "-C" | "--chdir" => {
                it.next();
            }
            s if s.starts_with('-') || s.contains('=') => {}
            s => return Some(s),
        }
    }
    None
}

/// `name` as the runs' PATH would find it: every `dir/name` that exists on the host, in PATH
/// order (the run user may be unable to reach the first and `env` then tries the next).
fn on_path(name: &str, run_path: &str) -> Vec<PathBuf> {
    std::env::split_paths(run_path).map(|d| d.join(name)).filter(|p| p.is_file()).collect()
}

fn file_head(p: &Path) -> Vec<u8> {
    use std::io::Read as _;
    let mut b = vec![0u8; 256];
    let n = std::fs::File::open(p).and_then(|mut f| f.read(&mut b)).unwrap_or(0);
    b.truncate(n);
    b
}

/// What the runs of `command` (argv, argv[0] absolute) need to reach, given the runs' PATH.
pub fn targets(command: &[String], run_path: &str) -> Vec<Target> {
    let Some(exe) = command.first() else { return Vec::new() };
    let exe_path = PathBuf::from(exe);
    let mut out = Vec::new();
    let head = file_head(&exe_path);
    let script = shebang(&head);
    let mode = if script.is_some() { EXEC | READ } else { EXEC };
    out.push(Target { what: "the command".into(), paths: vec![exe_path.clone()], mode, searched: None });
    // The resolved file too: a symlink's target may sit in another directory.
    if let Ok(real) = exe_path.canonicalize() {
        if real != exe_path {
            out.push(Target {
                what: format!("the command ({exe} links to it)"),
                paths: vec![real],
                mode,
                searched: None,
            });
        }
    }
    let mut interpreter = exe.clone();
    let mut args = &command[1..];
    let interp_args;
    if let Some((interp, words)) = script {
        let what = format!("the interpreter of {exe} (its #! line)");
        out.push(Target {
            what: what.clone(),
            paths: vec![PathBuf::from(&interp)],
            mode: EXEC,
            searched: None,
        });
        interpreter = interp.clone();
        if Path::new(&interp).file_name().is_some_and(|n| n == "env") {
            if let Some(prog) = env_program(&words) {
                let paths =
                    if prog.contains('/') { vec![PathBuf::from(prog)] } else { on_path(prog, run_path) };
                out.push(Target {
                    what: format!("{prog}, the interpreter {exe} names through env (its #! line)"),
                    searched: (!prog.contains('/')).then(|| run_path.to_string()),
                    paths: if paths.is_empty() { vec![PathBuf::from(prog)] } else { paths },
                    mode: EXEC,
                });
                interpreter = prog.to_string();
            }
        }
        // The kernel runs `interpreter [arg] exe args…`: the script is the command itself.
        interp_args = Vec::new();
        args = &interp_args;
    }
    if let Some(s) = script_argument(&interpreter, args) {
        // A word that is no file here is an option's value, not a script (`-W ignore`).
        if s.contains('/') || Path::new(s).is_file() {
            let name = Path::new(&interpreter)
                .file_name()
                .map_or(interpreter.clone(), |n| n.to_string_lossy().into());
            out.push(Target {
                what: format!("the script {name} runs"),
                paths: vec![PathBuf::from(s)],
                mode: READ,
                searched: None,
            });
        }
    }
    out
}

/// One step of a walk: a path prefix and the access it needs.
pub type Step = (CString, libc::c_int);

/// The steps of reaching `path`: every directory above it must be searchable, then the path
/// itself must allow `mode`. A relative path is walked relative to the run's working directory.
pub fn walk(path: &Path, mode: libc::c_int) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut acc = PathBuf::new();
    let comps: Vec<Component> = path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        acc.push(c);
        if matches!(c, Component::RootDir | Component::CurDir) {
            continue;
        }
        let Ok(cs) = CString::new(acc.as_os_str().as_bytes()) else { continue };
        steps.push((cs, if i + 1 == comps.len() { mode } else { EXEC }));
    }
    steps
}

/// The first step `access` refuses, with its errno. Allocates nothing: it runs in the forked
/// child between setting up the run's credentials and `_exit`.
pub fn first_block(
    steps: &[Step],
    mut access: impl FnMut(&CStr, libc::c_int) -> Result<(), i32>,
) -> Option<(usize, i32)> {
    for (i, (p, mode)) in steps.iter().enumerate() {
        if let Err(e) = access(p, *mode) {
            return Some((i, e));
        }
    }
    None
}

/// The kernel's answer for the calling process's effective uid and groups.
pub fn faccess(p: &CStr, mode: libc::c_int) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path; no allocation.
    if unsafe { libc::faccessat(libc::AT_FDCWD, p.as_ptr(), mode, libc::AT_EACCESS) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES))
    }
}

/// A target the run user cannot reach: which path, which step, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub what: String,
    pub path: PathBuf,
    /// The first component that stops it (the path itself when only the file's mode does).
    pub at: PathBuf,
    pub errno: i32,
    /// Whether `at` is a directory above the path (else the file itself).
    pub above: bool,
    pub mode: libc::c_int,
    pub searched: Option<String>,
}

/// `Blocked` for `target`'s first alternative given each alternative's `first_block` result;
/// None when one alternative is reachable.
pub fn diagnose(target: &Target, results: &[Option<(usize, i32)>]) -> Option<Blocked> {
    if results.iter().any(Option::is_none) || target.paths.is_empty() {
        return None;
    }
    let path = &target.paths[0];
    let steps = walk(path, target.mode);
    let (i, errno) = results.first().copied().flatten()?;
    let at = steps
        .get(i)
        .map(|(c, _)| PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes())))
        .unwrap_or_else(|| path.clone());
    Some(Blocked {
        what: target.what.clone(),
        path: path.clone(),
        above: i + 1 < steps.len(),
        at,
        errno,
        mode: target.mode,
        searched: target.searched.clone(),
    })
}

/// ` (mode 0700, owner root)` of a path as the host sees it, or nothing.
fn mode_owner(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(md) = std::fs::metadata(p) else { return String::new() };
    let owner = nix::unistd::User::from_uid(md.uid().into())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", md.uid()), |u| u.name);
    format!(" (mode {:04o}, owner {owner})", md.mode() & 0o7777)
}

/// The one error of a blocked audit: who, what, where it stops, and what to do.
pub fn message(b: &Blocked, user: &RunUser, workdir: &Path) -> String {
    let who = format!("{} (uid {}, gid {})", user.name, user.uid, user.gid);
    let why = nix::errno::Errno::from_raw(b.errno).desc().to_lowercase();
    let (stop, fix) = if let (true, Some(path)) =
        (b.errno == libc::ENOENT && b.path.is_relative(), &b.searched)
    {
        (
            format!("no {} on the runs' PATH ({path})", b.path.display()),
            "install it in a PATH directory (or name it with an absolute path), or".to_string(),
        )
    } else if b.errno == libc::ENOENT && b.path.is_relative() {
        (
            format!("{} does not exist in the runs (they start in {})", b.at.display(), workdir.display()),
            "name it with an absolute path, or".to_string(),
        )
    } else if b.errno == libc::ENOENT {
        (
            format!(
                "{} does not exist in the runs (each run gets a fresh /home and /tmp: only the command, its \
                 interpreter, its script and the PATH directories there are kept)",
                b.at.display()
            ),
            "give a path outside /home and /tmp, or".to_string(),
        )
    } else if b.above {
        (
            format!(
                "the directory {}{} cannot be entered by {} ({why})",
                b.at.display(),
                mode_owner(&b.at),
                user.name
            ),
            format!("open that directory to other users (chmod o+x {}), or", b.at.display()),
        )
    } else {
        let need = match b.mode {
            m if m == EXEC | READ => "read and executed",
            m if m == READ => "read",
            _ => "executed",
        };
        let bits = match b.mode {
            m if m == EXEC | READ => "o+rx",
            m if m == READ => "o+r",
            _ => "o+x",
        };
        (
            format!("{}{} cannot be {need} by {} ({why})", b.at.display(), mode_owner(&b.at), user.name),
            format!("make it accessible (chmod {bits} {}), or", b.at.display()),
        )
    };
    format!(
        "the run user {who} cannot reach {}: {stop}. Every run would fail, so none was started. \
         To fix: {fix} move the files under a directory every user can enter (e.g. /opt or /usr/local), \
         or pass --user NAME for a user who can reach them",
        if b.searched.is_some() { b.what.clone() } else { format!("{} ({})", b.what, b.path.display()) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scripts_of_known_interpreters() {
        assert_eq!(
            script_argument("/usr/bin/node", &s(&["--no-warnings", "/t/a.js", "-p", "hi"])),
            Some("/t/a.js")
        );
        assert_eq!(script_argument("node", &s(&["-r", "x", "a.js"])), Some("a.js"));
        assert_eq!(script_argument("node", &s(&["-e", "1"])), None);
        assert_eq!(script_argument("/usr/bin/python3.12", &s(&["-u", "b.py"])), Some("b.py"));
        assert_eq!(script_argument("python3", &s(&["-m", "http.server"])), None);
        assert_eq!(script_argument("deno", &s(&["run", "-A", "c.ts"])), Some("c.ts"));
        assert_eq!(script_argument("/x/claude", &s(&["-p", "hi"])), None);
        assert_eq!(script_argument("/bin/bash", &s(&["-lc", "/opt/x/claude -p hi"])), None);
    }

    #[test]
    fn shebang_and_env() {
        let (i, w) = shebang(b"#!/usr/bin/env -S node --no-warnings\nx").unwrap();
        assert_eq!(i, "/usr/bin/env");
        assert_eq!(env_program(&w), Some("node"));
        assert_eq!(env_program(&s(&["-i", "A=b", "python3"])), Some("python3"));
        assert_eq!(shebang(b"#! /bin/sh\n"), Some(("/bin/sh".into(), vec![])));
        assert_eq!(shebang(b"\x7fELF"), None);
    }

    #[test]
    fn walk_names_every_prefix() {
        let w = walk(Path::new("/tmp/x/a.js"), READ);
        let names: Vec<(&str, libc::c_int)> = w.iter().map(|(c, m)| (c.to_str().unwrap(), *m)).collect();
        assert_eq!(names, [("/tmp", EXEC), ("/tmp/x", EXEC), ("/tmp/x/a.js", READ)]);
        assert_eq!(walk(Path::new("a.js"), READ).len(), 1);
    }

    #[test]
    fn the_first_blocking_directory_is_named_with_the_fix() {
        let t = Target {
            what: "the script node runs".into(),
            paths: vec!["/root/clone/agent.js".into()],
            mode: READ,
            searched: None,
        };
        let steps = walk(&t.paths[0], t.mode);
        // /root refuses search to the run user; nothing below it is reached.
        let r = first_block(&steps, |p, _| if p.to_bytes() == b"/root" { Err(libc::EACCES) } else { Ok(()) });
        assert_eq!(r, Some((0, libc::EACCES)));
        let b = diagnose(&t, &[r]).unwrap();
        assert_eq!((b.at.as_path(), b.above), (Path::new("/root"), true));
        let user =
            RunUser { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![], source: "--user" };
        let m = message(&b, &user, Path::new("/home/nobody/project"));
        for want in [
            "nobody (uid 65534",
            "/root/clone/agent.js",
            "the directory /root",
            "chmod o+x /root",
            "--user",
            "none was started",
        ] {
            assert!(m.contains(want), "{want} in {m}");
        }
        // The file itself.
        let r = first_block(
            &steps,
            |p, _| if p.to_bytes().ends_with(b".js") { Err(libc::EACCES) } else { Ok(()) },
        );
        let b = diagnose(&t, &[r]).unwrap();
        assert!(!b.above && message(&b, &user, Path::new("/")).contains("chmod o+r /root/clone/agent.js"));
        // One reachable alternative (env's PATH lookup) is enough.
        assert_eq!(diagnose(&t, &[r, None]), None);
    }

    #[test]
    fn targets_follow_the_shebang_and_the_script_argument() {
        let dir = std::env::temp_dir().join(format!("aiw-reach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("agent.js");
        std::fs::write(&script, "#!/usr/bin/env node\n").unwrap();
        let t = targets(&s(&[script.to_str().unwrap(), "-p", "hi"]), "/nonexistent:/usr/bin:/bin");
        assert_eq!(t[0].paths, std::slice::from_ref(&script));
        assert_eq!(t[0].mode, EXEC | READ);
        assert_eq!(t[1].paths, [PathBuf::from("/usr/bin/env")]);
        assert!(t[2].what.starts_with("node, the interpreter"), "{t:?}");
        let t = targets(&s(&["/usr/bin/node", script.to_str().unwrap()]), "/usr/bin");
        assert_eq!(t.last().unwrap().paths, std::slice::from_ref(&script));
        assert_eq!(t.last().unwrap().mode, READ);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
