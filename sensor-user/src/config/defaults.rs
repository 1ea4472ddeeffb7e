//! Built-in defaults: runtimes, assistants and fingerprint categories.

use std::collections::BTreeMap;

use crate::config::{
    rules::{RuleConfig, Severity},
    AssistantRule, Basename, ExeMatch, NonEmpty, PathPattern,
};

/// Interpreters an assistant may run under; their exec is classified by argv.
pub const RUNTIMES: &[&str] = &[
    "node",
    "nodejs",
    "bun",
    "deno",
    "python",
    "python3",
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "pypy3",
    "uv",
    "uvx",
    "pipx",
];

/// (name, executable basenames or globs, comm values, argv markers)
type Builtin = (&'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

const ASSISTANTS: &[Builtin] = &[
    (
        "claude-code",
        &["claude", "claude.exe", "/**/claude/versions/*", "/**/@anthropic-ai/claude-code*/**"],
        &["claude"],
        &["@anthropic-ai/claude-code"],
    ),
    (
        "codex",
        &["codex", "codex-x86_64-unknown-linux-musl", "codex-aarch64-unknown-linux-musl"],
        &["codex", "codex-x86_64-un", "codex-aarch64-u"],
        &["@openai/codex"],
    ),
    ("gemini-cli", &["gemini"], &["gemini"], &["@google/gemini-cli"]),
    ("copilot-cli", &["copilot"], &["copilot"], &["@github/copilot"]),
    ("cursor-agent", &["cursor-agent"], &["cursor-agent"], &["/cursor-agent/", "@cursor/agent"]),
    ("aider", &["aider"], &["aider"], &["-m aider", "/aider-chat/", "/site-packages/aider/"]),
    ("opencode", &["opencode"], &["opencode"], &["opencode-ai/", "/opencode-ai"]),
    ("qwen-code", &["qwen"], &["qwen"], &["@qwen-code/qwen-code"]),
    ("goose", &["goose"], &["goose"], &["goose-cli", "/goose/bin/goose"]),
];

pub fn assistants() -> Vec<AssistantRule> {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    ASSISTANTS
        .iter()
        .map(|(name, exe, comm, argv)| AssistantRule {
            name: name.to_string(),
            exe: strings(exe).into_iter().map(ExeMatch).collect(),
            comm: strings(comm).into_iter().map(Basename).collect(),
            argv: strings(argv).into_iter().map(NonEmpty).collect(),
        })
        .collect()
}

const TIMEZONE: &[&str] = &[
    "/etc/localtime",
    "/etc/timezone",
    "/etc/sysconfig/clock",
    "/usr/share/zoneinfo/**",
    "/usr/share/zoneinfo-*/**",
    "/usr/lib/zoneinfo/**",
];

const NETWORK_CONFIG: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/networks",
    "/etc/resolvconf/**",
    "/proc/net/**",
    "/sys/class/net/**",
    "/sys/devices/**/net/**",
    "/run/systemd/resolve/**",
    "/etc/systemd/resolved.conf",
    "/etc/systemd/network/**",
    "/etc/NetworkManager/**",
    "/run/NetworkManager/**",
    "/var/lib/NetworkManager/**",
    "/etc/network/interfaces",
    "/etc/network/interfaces.d/**",
    "/etc/netplan/**",
];

const PROXY_CONFIG: &[&str] = &[
    "/etc/environment",
    "/etc/profile.d/*proxy*",
    "/etc/apt/apt.conf",
    "/etc/apt/apt.conf.d/**",
    "/etc/npmrc",
    "/usr/etc/npmrc",
    "/usr/lib/node_modules/npm/npmrc",
    "/usr/local/lib/node_modules/npm/npmrc",
    "/etc/pip.conf",
    "/etc/xdg/pip/pip.conf",
    "/etc/gitconfig",
    "/etc/wgetrc",
    "/etc/curlrc",
    "/etc/yarnrc",
    "~/.npmrc",
    "~/.yarnrc",
    "~/.yarnrc.yml",
    "~/.curlrc",
    "~/.wgetrc",
    "~/.gitconfig",
    "~/.config/git/config",
    "~/.pip/pip.conf",
    "~/.config/pip/pip.conf",
    "~/.docker/config.json",
];

const HOST_IDENTITY: &[&str] = &[
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/sys/class/dmi/id/**",
    "/sys/devices/virtual/dmi/id/**",
    "/etc/hostname",
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/random/boot_id",
];

const LOCALE: &[&str] = &["/etc/locale.conf", "/etc/default/locale"];

/// Another process's (or its own) environment block, read through /proc.
const ENVIRONMENT: &[&str] = &["/proc/[0-9]*/environ"];

pub fn categories() -> BTreeMap<String, Vec<PathPattern>> {
    [
        ("timezone", TIMEZONE),
        ("network_config", NETWORK_CONFIG),
        ("proxy_config", PROXY_CONFIG),
        ("host_identity", HOST_IDENTITY),
        ("locale", LOCALE),
        ("environment", ENVIRONMENT),
    ]
    .into_iter()
    .map(|(name, patterns)| (name.to_string(), patterns.iter().map(|p| PathPattern(p.to_string())).collect()))
    .collect()
}

/// Watched environment variables: category to name patterns.
pub fn variables() -> BTreeMap<String, Vec<crate::config::VarName>> {
    let proxy = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ];
    [
        ("proxy", &proxy[..]),
        ("base_url", &["*_BASE_URL"][..]),
        ("timezone", &["TZ", "TZDIR"][..]),
        ("locale", &["LANG", "LANGUAGE", "LC_*"][..]),
    ]
    .into_iter()
    .map(|(c, names)| (c.to_string(), names.iter().map(|n| crate::config::VarName(n.to_string())).collect()))
    .collect()
}

/// The built-in finding rule: relay detection. The ordinary pattern (the timezone and the
/// environment read, then a call to the assistant's own API) is what every assistant does, so it
/// is no finding; only a read of the host's identity or network configuration by the assistant's
/// own process shortly before it calls the base URL it was *given* is: the pattern of a relay
/// that fingerprints the host for whoever runs it.
pub fn rules() -> Vec<RuleConfig> {
    let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![RuleConfig {
        name: RELAY_RULE.into(),
        description: "The assistant's own process read the host's identity or network configuration, then \
                      connected to the API base URL it was given (*_BASE_URL): a relay may be collecting \
                      the host's fingerprint"
            .into(),
        severity: Severity::High,
        descendant_severity: Severity::High,
        groups: vec![g(&["host_identity", "network_config"])],
        min_groups: 1,
        destinations: g(&["base_url"]),
        window_seconds: 60,
        readers: crate::config::rules::Readers::Assistant,
        ignore: g(RESOLVER_AND_RUNTIME),
    }]
}

/// What the relay rule does not count: the files name resolution reads (glibc's getaddrinfo, and
/// the runtimes on top of it), the interface-address dump it makes for `AI_ADDRCONFIG` (netlink
/// `RTM_GETADDR`), and `uname`, which Node and Bun call to name themselves. Real assistants do
/// all of these right before every API call: counted, the rule fired for every session of Claude
/// Code and Gemini CLI. They stay in the records and the session profile.
const RESOLVER_AND_RUNTIME: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/run/systemd/resolve/**",
    "/etc/resolvconf/**",
    "RTM_GETADDR",
    "uname",
];

/// The name of the built-in relay-detection rule.
pub const RELAY_RULE: &str = "relay_identity_then_base_url";

/// Built-in destination classes: class → host patterns.
pub fn destinations() -> BTreeMap<String, Vec<String>> {
    let llm = [
        "api.anthropic.com",
        "*.anthropic.com",
        "api.openai.com",
        "*.openai.com",
        "generativelanguage.googleapis.com",
        "*.aiplatform.googleapis.com",
        "cloudcode-pa.googleapis.com",
        "api.githubcopilot.com",
        "*.githubcopilot.com",
        "copilot-proxy.githubusercontent.com",
        "api2.cursor.sh",
        "*.cursor.sh",
        "dashscope.aliyuncs.com",
        "dashscope-intl.aliyuncs.com",
        "openrouter.ai",
        "api.mistral.ai",
        "api.deepseek.com",
        "api.groq.com",
        "api.x.ai",
        "api.together.xyz",
        "*.openai.azure.com",
        "opencode.ai",
        "*.opencode.ai",
    ];
    [("llm_api".to_string(), llm.iter().map(|s| s.to_string()).collect())].into_iter().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_pass_validation() {
        for rule in super::assistants() {
            for e in &rule.exe {
                crate::config::ExeMatch::try_from(e.0.clone()).unwrap();
            }
        }
        for (_, patterns) in super::categories() {
            for p in patterns {
                crate::config::PathPattern::try_from(p.0.clone()).unwrap();
            }
        }
    }
}
