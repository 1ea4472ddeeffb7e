//! Is a process an assistant? By executable path, comm and argv markers, from config.

use crate::config::{glob::Glob, AssistantRule, Basename};

/// What is known of a process at exec or from `/proc`.
#[derive(Debug, Default, Clone)]
pub struct ProcFacts<'a> {
    /// Executable path (`/proc/<pid>/exe`, or the exec filename).
    pub exe: &'a str,
    /// The filename exec was called with (script path for a shebang script).
    pub filename: &'a str,
    pub comm: &'a str,
    pub argv: &'a [String],
}

struct Rule {
    name: String,
    basenames: Vec<String>,
    globs: Vec<Glob>,
    comms: Vec<String>,
    markers: Vec<String>,
}

/// Compiled assistant rules.
pub struct AssistantClassifier {
    rules: Vec<Rule>,
    runtimes: Vec<String>,
}

impl AssistantClassifier {
    /// From the config's `assistants` and `runtimes`.
    pub fn new(assistants: &[AssistantRule], runtimes: &[Basename]) -> Self {
        let rules = assistants.iter().map(compile).collect();
        let runtimes = runtimes.iter().map(|r| r.0.clone()).collect();
        Self { rules, runtimes }
    }

    /// Name of the first rule that matches, if any.
    pub fn classify(&self, p: &ProcFacts<'_>) -> Option<&str> {
        let exe_base = basename(p.exe);
        let file_base = basename(p.filename);
        // fexecve of a memfd runs "/dev/fd/N" with comm "N": argv[0] is what is left of a name.
        let argv0_base = p.argv.first().map(|a| basename(a)).unwrap_or("");
        // `node /usr/local/bin/gemini`: the script an interpreter runs counts as its executable.
        let script = p
            .argv
            .iter()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .filter(|_| self.is_runtime(exe_base) || self.is_runtime(file_base))
            .map(String::as_str);
        // Joined only for a rule with markers: the start-up scan classifies every process.
        let cmdline = std::cell::OnceCell::new();
        self.rules
            .iter()
            .find(|r| {
                r.basenames.iter().any(|b| {
                    b == exe_base
                        || b == file_base
                        || b == argv0_base
                        || script.is_some_and(|s| basename(s) == b)
                }) || r.globs.iter().any(|g| {
                    g.matches(p.exe)
                        || (p.filename.starts_with('/') && g.matches(p.filename))
                        || script.is_some_and(|s| s.starts_with('/') && g.matches(s))
                }) || r.comms.iter().any(|c| c == p.comm)
                    || r.markers.iter().any(|m| cmdline.get_or_init(|| p.argv.join(" ")).contains(m.as_str()))
            })
            .map(|r| r.name.as_str())
    }

    fn is_runtime(&self, base: &str) -> bool {
        self.runtimes.iter().any(|r| r == base)
    }

    /// For the start-up scan: whether a running process's command line can make it an assistant
    /// the way the live path would. Live, an exec's argv is classified only when the kernel holds
    /// it as a candidate (its basename among [`Self::candidate_names`], or an exec of a file
    /// descriptor); `exe` and `comm` stand in for the exec's filename, and an executable that is
    /// a memory file, or could not be read, keeps the command line wanted. Skipping the others'
    /// `cmdline` saves the scan about 40 % of its system calls.
    pub fn argv_gate(&self) -> impl Fn(&str, &str) -> bool {
        let names: std::collections::HashSet<String> = self.candidate_names().into_iter().collect();
        move |exe: &str, comm: &str| {
            exe.is_empty()
                || exe.starts_with("/memfd:")
                || exe.starts_with("/dev/fd/")
                || names.contains(cut_comm(basename(exe)))
                || names.contains(comm)
        }
    }

    /// Basenames that make an exec a candidate in the kernel (cut to 15 bytes like `comm`).
    pub fn candidate_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .runtimes
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.basenames.iter().chain(r.comms.iter())))
            .map(|n| cut_comm(n).to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn compile(rule: &AssistantRule) -> Rule {
    let (globs, basenames): (Vec<_>, Vec<_>) =
        rule.exe.iter().map(|e| e.0.clone()).partition(|e| e.starts_with('/'));
    Rule {
        name: rule.name.clone(),
        basenames,
        // Validated when the config was parsed.
        globs: globs.iter().filter_map(|g| Glob::new(g).ok()).collect(),
        comms: rule.comm.iter().map(|c| cut_comm(&c.0).to_string()).collect(),
        markers: rule.argv.iter().map(|m| m.0.clone()).collect(),
    }
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The kernel keeps 15 bytes of a task name.
pub fn cut_comm(name: &str) -> &str {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(exe: &str, filename: &str, comm: &str, argv: &[&str]) -> Option<String> {
        let c = AssistantClassifier::new(
            &crate::config::Config::default().assistants,
            &crate::config::Config::default().runtimes,
        );
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        c.classify(&ProcFacts { exe, filename, comm, argv: &argv }).map(str::to_string)
    }

    #[test]
    fn node_cli_js_of_each_npm_assistant() {
        let cases = [
            ("/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js", "claude-code"),
            ("/usr/local/lib/node_modules/@google/gemini-cli/dist/index.js", "gemini-cli"),
            ("/usr/lib/node_modules/@openai/codex/bin/codex.js", "codex"),
            ("/home/a/.npm-global/lib/node_modules/@github/copilot/index.js", "copilot-cli"),
            ("/usr/lib/node_modules/@qwen-code/qwen-code/cli.js", "qwen-code"),
            ("/usr/lib/node_modules/opencode-ai/bin/opencode", "opencode"),
        ];
        for (script, want) in cases {
            assert_eq!(
                classify("/usr/bin/node", "/usr/bin/node", "node", &["node", script]).as_deref(),
                Some(want)
            );
        }
    }

    #[test]
    fn native_binaries_and_scripts() {
        assert_eq!(
            classify(
                "/root/.local/share/claude/versions/2.0.1",
                "/root/.local/bin/claude",
                "claude",
                &["claude"]
            )
            .as_deref(),
            Some("claude-code")
        );
        assert_eq!(
            classify("/root/.local/share/claude/versions/2.0.1", "/x/2.0.1", "2.0.1", &["2.0.1"]).as_deref(),
            Some("claude-code")
        );
        assert_eq!(
            classify("/usr/bin/goose", "/usr/bin/goose", "goose", &["goose", "session"]).as_deref(),
            Some("goose")
        );
        assert_eq!(
            classify("/usr/bin/python3.11", "/home/a/.local/bin/aider", "aider", &["aider", "--yes"])
                .as_deref(),
            Some("aider")
        );
        assert_eq!(
            classify("/usr/bin/python3", "/usr/bin/python3", "python3", &["python3", "-m", "aider"])
                .as_deref(),
            Some("aider")
        );
        assert_eq!(
            classify(
                "/usr/bin/node",
                "/usr/bin/node",
                "node",
                &["node", "--no-warnings", "/usr/local/bin/gemini", "-p", "hi"]
            )
            .as_deref(),
            Some("gemini-cli")
        );
        assert_eq!(
            classify(
                "/opt/cursor-agent/versions/1/node",
                "/opt/x/node",
                "node",
                &["node", "/root/.local/share/cursor-agent/versions/1/index.js"]
            )
            .as_deref(),
            Some("cursor-agent")
        );
        let long = "/opt/codex/codex-x86_64-unknown-linux-musl";
        assert_eq!(classify(long, long, "codex-x86_64-un", &[long]).as_deref(), Some("codex"));
    }

    #[test]
    fn ordinary_processes_are_not_assistants() {
        assert_eq!(classify("/usr/bin/node", "/usr/bin/node", "node", &["node", "server.js"]), None);
        assert_eq!(classify("/usr/bin/bash", "/bin/bash", "bash", &["bash", "-c", "echo claude"]), None);
        assert_eq!(classify("/usr/bin/cat", "/usr/bin/cat", "cat", &["cat", "/tmp/claude"]), None);
        // A non-runtime's argument that happens to be named like an assistant is not a script run.
        assert_eq!(classify("/usr/bin/vim", "/usr/bin/vim", "vim", &["vim", "/tmp/gemini"]), None);
    }

    #[test]
    fn candidate_names_are_cut_like_comm() {
        let c = AssistantClassifier::new(
            &crate::config::Config::default().assistants,
            &crate::config::Config::default().runtimes,
        );
        let names = c.candidate_names();
        assert!(names.contains(&"node".to_string()));
        assert!(names.contains(&"claude".to_string()));
        assert!(names.contains(&"codex-x86_64-un".to_string()));
        assert!(names.iter().all(|n| n.len() <= 15));
    }

    #[test]
    fn the_scan_wants_a_command_line_where_the_live_path_classifies_one() {
        let c = AssistantClassifier::new(
            &crate::config::Config::default().assistants,
            &crate::config::Config::default().runtimes,
        );
        let gate = c.argv_gate();
        // Runtimes and assistants' names, by executable or by comm (a script's name).
        assert!(gate("/usr/bin/node", "node"));
        assert!(gate("/usr/bin/python3.15", "aider"));
        assert!(gate("/opt/x/codex-x86_64-unknown-linux-musl", "codex-x86_64-un"));
        // An exec of a memory file, and an executable that could not be read.
        assert!(gate("/memfd:x", "3"));
        assert!(gate("", "sh"));
        // Anything else: argv cannot make it an assistant live, so it is not read.
        assert!(!gate("/usr/bin/bash", "bash"));
        assert!(!gate("/usr/bin/vim", "vim"));
    }
}
