//! Secrets never leave the host: command lines are scrubbed of API keys, tokens, passwords and
//! URL credentials before any record is built from them.

/// Options whose value is a secret (`--api-key X` or `--api-key=X`).
const SECRET_OPTIONS: &[&str] = &[
    "api-key",
    "apikey",
    "api_key",
    "key",
    "token",
    "access-token",
    "auth-token",
    "password",
    "passwd",
    "pass",
    "secret",
    "client-secret",
    "auth",
    "authorization",
    "bearer",
    "credentials",
    "private-key",
    "session-token",
];

/// Prefixes of well-known credential formats.
const TOKEN_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "pk-",
    "rk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "AIza",
    "AKIA",
    "ASIA",
    "ya29.",
    "eyJ",
    "npm_",
    "pypi-",
    "hf_",
    "gsk_",
];

pub const MASK: &str = "[REDACTED]";

fn option_name(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    Some(name.split('=').next().unwrap_or(name))
}

fn is_secret_option(arg: &str) -> bool {
    option_name(arg).is_some_and(|n| {
        let n = n.to_ascii_lowercase();
        SECRET_OPTIONS
            .iter()
            .any(|s| n == *s || n.ends_with(&format!("-{s}")) || n.ends_with(&format!("_{s}")))
    })
}

/// Whether a word looks like a credential by its format.
pub fn looks_like_secret(word: &str) -> bool {
    let w = word.trim_matches(|c: char| c == '"' || c == '\'');
    if w.len() >= 12 && TOKEN_PREFIXES.iter().any(|p| w.starts_with(p)) {
        return true;
    }
    // A long run of letters and digits with both: a key, not a word or a path.
    w.len() >= 32
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=+/.".contains(&b))
        && w.bytes().any(|b| b.is_ascii_digit())
        && w.bytes().any(|b| b.is_ascii_alphabetic())
        && !w.contains('/')
}

/// Scrubs one string (an argument, or a header line inside one).
fn scrub(arg: &str) -> String {
    // "Authorization: Bearer x", "x-api-key: x" passed as one argument (curl -H).
    if let Some((name, _)) = arg.split_once(':') {
        let n = name.trim().to_ascii_lowercase();
        if ["authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"]
            .contains(&n.as_str())
        {
            return format!("{name}: {MASK}");
        }
    }
    // --api-key=value
    if let Some((opt, _)) = arg.split_once('=') {
        if is_secret_option(opt) {
            return format!("{opt}={MASK}");
        }
    }
    // KEY=value environment-style assignments with a secret-ish name.
    if let Some((name, _)) = arg.split_once('=') {
        let n = name.to_ascii_uppercase();
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"].iter().any(|s| n.contains(s))
        {
            return format!("{name}={MASK}");
        }
    }
    // URL credentials and query strings.
    let mut out = String::with_capacity(arg.len());
    for (i, word) in arg.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&scrub_word(word));
    }
    out
}

fn scrub_word(word: &str) -> String {
    if looks_like_secret(word) {
        return MASK.to_string();
    }
    if let Some((scheme, rest)) = word.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = match authority.rsplit_once('@') {
            Some((_, host)) => format!("{MASK}@{host}"),
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, _)) => format!("{path}?{MASK}"),
            None => tail.to_string(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    word.to_string()
}

/// A command line safe to report.
pub fn argv(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for a in args {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        if is_secret_option(a) && !a.contains('=') {
            mask_next = true;
            out.push(a.clone());
            continue;
        }
        out.push(scrub(a));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Vec<String> {
        argv(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_tokens_headers_urls() {
        assert_eq!(
            r(&["aider", "--api-key", "anything", "--model", "x"]),
            ["aider", "--api-key", MASK, "--model", "x"]
        );
        assert_eq!(
            r(&["tool", "--openai-api-key=abc", "--token=t"]),
            ["tool", &format!("--openai-api-key={MASK}"), &format!("--token={MASK}")]
        );
        assert_eq!(r(&["x", "sk-ant-api03-abcdefghijklmnop"]), ["x", MASK]);
        assert_eq!(
            r(&["curl", "-H", "Authorization: Bearer abc.def"]),
            ["curl", "-H", &format!("Authorization: {MASK}")]
        );
        assert_eq!(
            r(&["curl", "https://u:p@h.example/p?key=1"]),
            ["curl", &format!("https://{MASK}@h.example/p?{MASK}")]
        );
        assert_eq!(
            r(&["env", "ANTHROPIC_API_KEY=sk-x", "LANG=C"]),
            ["env", &format!("ANTHROPIC_API_KEY={MASK}"), "LANG=C"]
        );
        assert_eq!(
            r(&["sh", "-c", "claude --api-key ghp_abcdefghijklmnopqrstuvwxyz1234"]),
            ["sh", "-c", &format!("claude --api-key {MASK}")]
        );
        assert_eq!(r(&["x", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"]), ["x", MASK]);
    }

    #[test]
    fn ordinary_arguments_stay() {
        let args = [
            "node",
            "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
            "-p",
            "hello world",
            "--model",
            "sonnet",
        ];
        assert_eq!(r(&args), args);
        assert_eq!(r(&["cat", "/etc/localtime"]), ["cat", "/etc/localtime"]);
        assert_eq!(
            r(&["git", "commit", "-m", "fix: key handling"]),
            ["git", "commit", "-m", "fix: key handling"]
        );
    }
}
