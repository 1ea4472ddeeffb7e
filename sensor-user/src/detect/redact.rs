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

/// Header names whose value is a credential (`curl -H "Authorization: Bearer x"`).
const SECRET_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"];

/// Words that introduce a credential in the next word when written bare, as a key name
/// (`aws configure set aws_secret_access_key VALUE`): they end in one of these after a `_` or `-`.
const SECRET_KEY_NAMES: &[&str] =
    &["secret", "secret_key", "secret_access_key", "token", "password", "passwd", "api_key"];

/// Authentication schemes that come before the credential in a header value.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "negotiate"];

/// Whether a word looks like a credential by its format.
pub fn looks_like_secret(word: &str) -> bool {
    let w = word.trim_matches(|c: char| c == '"' || c == '\'');
    if w.len() >= 12 && TOKEN_PREFIXES.iter().any(|p| w.starts_with(p)) {
        return true;
    }
    let (upper, lower, digit) = (
        w.bytes().any(|b| b.is_ascii_uppercase()),
        w.bytes().any(|b| b.is_ascii_lowercase()),
        w.bytes().any(|b| b.is_ascii_digit()),
    );
    // A long run of letters and digits with both: a key, not a word or a path.
    let key = w.len() >= 32
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=+.".contains(&b))
        && digit
        && (upper || lower);
    // Base64 with `/` in it (an AWS secret key): mixed case and digits, none of the `.`, `-`,
    // `_` that file names have, not rooted like a path.
    let base64 = w.len() >= 30
        && w.contains('/')
        && !w.starts_with('/')
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        && upper
        && lower
        && digit;
    key || base64
}

/// A URL path segment that is a credential (webhook and bot tokens ride in paths): a known
/// prefix, a key by [`looks_like_secret`], or 20 or more characters mixing upper and lower case
/// and digits (identifiers such as UUIDs are one case).
fn secret_segment(seg: &str) -> bool {
    looks_like_secret(seg)
        || (seg.len() >= 20
            && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
            && seg.bytes().any(|b| b.is_ascii_uppercase())
            && seg.bytes().any(|b| b.is_ascii_lowercase())
            && seg.bytes().any(|b| b.is_ascii_digit()))
}

fn is_header_name(word: &str) -> bool {
    SECRET_HEADERS.contains(&word.trim().to_ascii_lowercase().as_str())
}

fn is_secret_key_name(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    !w.starts_with('-')
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && SECRET_KEY_NAMES
            .iter()
            .any(|k| w.strip_suffix(k).is_some_and(|head| head.ends_with('_') || head.ends_with('-')))
}

/// What the next word is, given the words before it.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    Plain,
    /// The value of a secret option or key name.
    Secret,
    /// A header value: an optional scheme, then the credential.
    HeaderValue,
    /// `-u`/`--user`/`--proxy-user`: `user:password` is a credential, a bare user name is not.
    UserPassword,
}

/// Scrubs a list of words (a command line, or the words of one `sh -c` string): options take
/// their values with them.
fn scrub_words<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Next::Plain;
    for w in words {
        let bare = w.trim_matches(|c: char| c == '"' || c == '\'');
        let state = std::mem::replace(&mut next, Next::Plain);
        match state {
            _ if w.is_empty() => {
                next = state;
                out.push(String::new());
                continue;
            }
            Next::Secret => {
                out.push(MASK.to_string());
                continue;
            }
            Next::HeaderValue => {
                if AUTH_SCHEMES.contains(&bare.to_ascii_lowercase().as_str()) {
                    next = Next::Secret;
                    out.push(w.to_string());
                } else {
                    out.push(MASK.to_string());
                }
                continue;
            }
            Next::UserPassword if bare.contains(':') => {
                out.push(MASK.to_string());
                continue;
            }
            _ => {}
        }
        if is_secret_option(w) && !w.contains('=') || is_secret_key_name(bare) {
            next = Next::Secret;
        } else if bare.strip_suffix(':').is_some_and(is_header_name) {
            next = Next::HeaderValue;
        } else if ["-u", "--user", "--proxy-user", "-U"].contains(&w) {
            next = Next::UserPassword;
        }
        out.push(scrub(w));
    }
    out
}

/// Scrubs one argument: a header line, an option or assignment with a secret value, or the
/// words of a string that holds a command line.
fn scrub(arg: &str) -> String {
    // "Authorization: Bearer x", "x-api-key: x" passed as one argument (curl -H).
    if let Some((name, _)) = arg.split_once(':') {
        if is_header_name(name) {
            return format!("{name}: {MASK}");
        }
    }
    if arg.contains(' ') {
        return scrub_words(arg.split(' ')).join(" ");
    }
    if let Some((name, _)) = arg.split_once('=') {
        // --api-key=value
        if is_secret_option(name) {
            return format!("{name}={MASK}");
        }
        // KEY=value environment-style assignments with a secret-ish name.
        let n = name.to_ascii_uppercase();
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"].iter().any(|s| n.contains(s))
        {
            return format!("{name}={MASK}");
        }
    }
    scrub_word(arg)
}

fn scrub_word(word: &str) -> String {
    if looks_like_secret(word) {
        return MASK.to_string();
    }
    let Some((scheme, rest)) = word.split_once("://") else { return word.to_string() };
    // Query and fragment (`#access_token=`) are masked whole.
    let (head, tail) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let tail = match tail.chars().next() {
        Some(c) => format!("{c}{MASK}"),
        None => String::new(),
    };
    let slash = head.find('/').unwrap_or(head.len());
    let port = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    // Credentials: an `@` before the path, or a `user:pa/ss@host` whose password holds a `/`
    // (a `:` before the first `/` that is not a port).
    let colon = head[..slash].find(':');
    let creds = head.rfind('@').filter(|&at| {
        at < slash || colon.is_some_and(|c| !port(&head[c + 1..slash]) && !head.starts_with('['))
    });
    let (authority, path) = match creds {
        Some(at) => {
            let after = &head[at + 1..];
            let end = after.find('/').unwrap_or(after.len());
            (format!("{MASK}@{}", &after[..end]), &after[end..])
        }
        // `user:secret` cut before its `@` (arguments are kept to 256 bytes): nothing after the
        // `:` can be told from the secret.
        None if colon.is_some_and(|c| !port(&head[c + 1..slash])) && !head.starts_with('[') => {
            return format!("{scheme}://{MASK}");
        }
        None => (head[..slash].to_string(), &head[slash..]),
    };
    let path: Vec<&str> = path.split('/').map(|seg| if secret_segment(seg) { MASK } else { seg }).collect();
    format!("{scheme}://{authority}{}{tail}", path.join("/"))
}

/// A command line safe to report.
pub fn argv(args: &[String]) -> Vec<String> {
    scrub_words(args.iter().map(String::as_str))
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
    fn secrets_with_slashes_in_strings_fragments_paths_and_cut_urls() {
        let aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            r(&["aws", "configure", "set", "aws_secret_access_key", "plainvalue"]),
            ["aws", "configure", "set", "aws_secret_access_key", MASK]
        );
        assert_eq!(r(&["x", aws]), ["x", MASK]);
        assert_eq!(
            r(&["sh", "-c", "curl -u alice:pw1 -H 'Authorization: Bearer abc' --api-key k https://h/"]),
            [
                "sh",
                "-c",
                &format!("curl -u {MASK} -H 'Authorization: Bearer {MASK} --api-key {MASK} https://h/")
            ]
        );
        assert_eq!(r(&["curl", "-u", "alice"]), ["curl", "-u", "alice"]);
        assert_eq!(
            r(&["open", "https://app.example/cb#access_token=abc"]),
            ["open", &format!("https://app.example/cb#{MASK}")]
        );
        assert_eq!(
            r(&["curl", "https://hooks.slack.com/services/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"]),
            ["curl", &format!("https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/{MASK}")]
        );
        let cut = format!("http://bob:{}", "Z9".repeat(120));
        assert_eq!(r(&["x", &cut]), ["x", &format!("http://{MASK}")]);
        assert_eq!(
            r(&["x", "http://carol:pa/ss@proxy.example:3128/p"]),
            ["x", &format!("http://{MASK}@proxy.example:3128/p")]
        );
    }

    #[test]
    fn urls_without_credentials_stay() {
        for url in [
            "https://registry.npmjs.org/@anthropic-ai/claude-code",
            "http://127.0.0.1:8080/v1/messages",
            "http://[::1]:8080/x",
            "https://api.example/v1/models/claude-sonnet-4-5-20250929",
            "https://github.com/aya-rs/aya/blob/main/README.md",
        ] {
            assert_eq!(r(&["curl", url]), ["curl", url]);
        }
        assert_eq!(
            r(&["cat", "src/main/java/com/example/Handler.java"]),
            ["cat", "src/main/java/com/example/Handler.java"]
        );
        assert_eq!(r(&["sudo", "passwd", "alice"]), ["sudo", "passwd", "alice"]);
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
