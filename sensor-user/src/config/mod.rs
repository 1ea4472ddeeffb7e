//! Configuration: built-in defaults, a TOML file that overrides them, and validation.
//!
//! Every value is checked while it is deserialized (newtypes with `try_from`), so an error can
//! name the file, the line and the field. A user's `[categories]` entry replaces that category's
//! built-in list; an `[[assistants]]` entry replaces the built-in rule of the same name or adds one.

pub mod content;
pub mod defaults;
pub mod detection;
pub mod glob;
pub mod rules;

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::Path};

use serde::{Deserialize, Serialize};

use crate::config::glob::Glob;

/// Effective configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sensor: SensorConfig,
    pub output: OutputConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    /// Keep the built-in assistant rules (entries in `assistants` with the same name replace them).
    pub builtin_assistants: bool,
    /// Executable basenames of interpreters: a process that execs one is held as pending in the
    /// kernel until its argv is classified, so nothing it reads right after exec is missed.
    pub runtimes: Vec<Basename>,
    pub assistants: Vec<AssistantRule>,
    /// Fingerprint categories: name to path patterns.
    pub categories: BTreeMap<String, Vec<PathPattern>>,
    pub variables: VariablesConfig,
    pub correlation: CorrelationConfig,
    /// Destination classes: name → host patterns (`*.example.com` for subdomains). Metrics label
    /// destinations by class; anything else is `other` (or `base_url`, a host the session was
    /// given in a `*_BASE_URL` variable).
    pub destinations: BTreeMap<String, Vec<String>>,
    /// Finding rules; an entry replaces the built-in rule of the same name or adds one.
    pub rules: Vec<rules::RuleConfig>,
    /// The learned baseline and the signature file.
    pub detection: detection::DetectionConfig,
    /// The prompt-marker scan of requests to LLM APIs.
    pub content: content::ContentConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// Egress events are annotated with the session's reads this long before them.
    pub window_seconds: u64,
    /// Findings emitted per minute at most (all sessions); more are counted, not emitted.
    pub max_findings_per_minute: u32,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self { window_seconds: 120, max_findings_per_minute: 60 }
    }
}

/// What a reported value keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValuePolicy {
    /// URL scheme, host and port; host lists; short plain values. The default.
    Host,
    /// No value at all, only whether the variable is set.
    None,
}

/// Environment variables: which are watched, what of their values is reported, and how reads
/// through libc are probed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VariablesConfig {
    /// What a reported value keeps: `host` (URL scheme/host/port, host lists, short plain
    /// values) or `none`.
    pub values: ValuePolicy,
    /// `getenv`/`secure_getenv` uprobes: `session` (per session, inherited by every process it
    /// starts; nothing outside sessions pays), `system` (every process on the host pays for every
    /// getenv, but a root's first reads are seen too), or `off`.
    pub getenv_probes: GetenvProbes,
    /// libc files to probe besides the system's glibc and musl.
    pub libc: Vec<String>,
    /// Category to variable-name patterns (`*` matches any run of characters).
    pub watch: BTreeMap<String, Vec<VarName>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Host name put in events; empty means the system's.
    pub host_name: String,
    /// Size of the kernel's map of tracked processes.
    pub max_tracked: MapSize,
    /// Size of the kernel's map of tracked processes' sockets; sockets past it are counted
    /// (`socket_map_full`), not followed.
    pub max_sockets: MapSize,
    /// Bytes of the kernel-to-daemon ring buffer (a power of two, at least 64 KiB).
    pub ring_buffer_bytes: RingBufferSize,
    /// Resolve each process's paths inside its own root (`/proc/<pid>/root`), as that process
    /// would: an assistant in a container on the host, or the host's processes seen by a daemon
    /// in a container (the DaemonSet). On by default; off resolves through the daemon's root.
    pub process_roots: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// `auto` (human lines on a terminal, JSON otherwise), `json`, `human`, or `none` (no records:
    /// metrics only).
    pub format: OutputFormat,
    /// Events waiting for the sink at most; past that they are dropped and counted.
    pub queue: MapSize,
    /// `native` (the aiwatch.v1 schema) or `ocsf` (OCSF 1.3 classes; JSON only).
    pub schema: OutputSchema,
    /// Write events to this file (appending; reopened on SIGHUP) instead of stdout.
    pub path: Option<std::path::PathBuf>,
    /// What is sent: `summary` (session start/end, findings, the first read of each artifact
    /// per session, session rollups), `reads`, or `all` (see docs/config.md).
    pub detail: OutputDetail,
    /// Seconds between the session rollups of a long session (one more at its end).
    pub rollup_interval: RollupInterval,
    /// `[output.syslog]`: also send every record to a syslog receiver (a SIEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<syslog::SyslogConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Address of the Prometheus endpoint (`/metrics`).
    pub listen: SocketAddr,
    /// Connections served at once; more are accepted and closed at once (and counted).
    pub max_connections: ConnectionLimit,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Daemon log level: error, warn, info, debug or trace.
    pub level: LogLevel,
    /// Kernel-side diagnostics (aya-log) at this level and above are sent; `off` sends none.
    pub kernel_level: KernelLogLevel,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// How a process is recognised as an assistant: any one criterion is enough.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssistantRule {
    pub name: String,
    /// Executable basenames (`claude`) or absolute path globs (`/opt/**/claude`). A basename also
    /// matches the script an interpreter runs (`node /usr/local/bin/claude`).
    #[serde(default)]
    pub exe: Vec<ExeMatch>,
    /// Exact process names (`comm`, at most 15 bytes).
    #[serde(default)]
    pub comm: Vec<Basename>,
    /// Substrings of the command line (arguments joined by single spaces).
    #[serde(default)]
    pub argv: Vec<NonEmpty>,
}

macro_rules! string_enum {
    ($name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),* }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text),* })
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(format!("expected one of: {}", [$($text),*].join(", "))),
                }
            }
        }
    };
}

string_enum!(OutputFormat { Auto = "auto", Json = "json", Human = "human", None = "none" });
string_enum!(OutputSchema { Native = "native", Ocsf = "ocsf" });
string_enum!(OutputDetail { Summary = "summary", Reads = "reads", All = "all" });
string_enum!(GetenvProbes { Session = "session", System = "system", Off = "off" });
string_enum!(LogFormat { Text = "text", Json = "json" });
string_enum!(LogLevel { Error = "error", Warn = "warn", Info = "info", Debug = "debug", Trace = "trace" });
string_enum!(KernelLogLevel {
    Off = "off", Error = "error", Warn = "warn", Info = "info", Debug = "debug", Trace = "trace"
});

impl KernelLogLevel {
    /// Value of aya-log-ebpf's `AYA_LOG_LEVEL` global (0 = off, 1 = error … 5 = trace).
    pub fn ebpf_level(self) -> u8 {
        self as u8
    }
}

macro_rules! validated {
    ($(#[$m:meta])* $name:ident($inner:ty, $inner_name:literal), |$v:ident| $check:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = $inner_name, into = $inner_name)]
        pub struct $name(pub $inner);
        impl TryFrom<$inner> for $name {
            type Error = String;
            fn try_from($v: $inner) -> Result<Self, String> {
                $check.map(|()| Self($v))
            }
        }
        impl From<$name> for $inner {
            fn from(v: $name) -> $inner {
                v.0
            }
        }
    };
}

validated!(
    /// A map or queue size: 1 to 1,048,576.
    MapSize(u32, "u32"),
    |v| if (1..=1 << 20).contains(&v) { Ok(()) } else { Err(format!("{v} is out of range 1..=1048576")) }
);
validated!(
    /// Seconds between a long session's rollups: 10 to 86,400.
    RollupInterval(u64, "u64"),
    |v| if (10..=86_400).contains(&v) { Ok(()) } else { Err(format!("{v} is out of range 10..=86400 (seconds)")) }
);
validated!(
    /// Concurrent connections to the metrics endpoint: 1 to 4096.
    ConnectionLimit(u32, "u32"),
    |v| if (1..=4096).contains(&v) { Ok(()) } else { Err(format!("{v} is out of range 1..=4096")) }
);
validated!(
    /// Ring buffer size: a power of two from 64 KiB to 1 GiB.
    RingBufferSize(u32, "u32"),
    |v| if v.is_power_of_two() && (1 << 16..=1 << 30).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is not a power of two from 65536 to 1073741824"))
    }
);
validated!(
    /// An executable basename: no `/`, not empty, at most 255 bytes.
    Basename(String, "String"),
    |v| if v.is_empty() || v.contains('/') || v.len() > 255 || v.contains('\0') {
        Err(format!("{v:?} is not a file name (no '/', 1 to 255 bytes)"))
    } else {
        Ok(())
    }
);
validated!(
    /// An environment variable name pattern: letters, digits, `_`, and at most one `*`.
    VarName(String, "String"),
    |v| if !v.is_empty()
        && v.len() <= 128
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*')
        && v.matches('*').count() <= 1
    {
        Ok(())
    } else {
        Err(format!("{v:?} is not a variable name pattern ([A-Za-z0-9_]+ with at most one *)"))
    }
);
validated!(
    /// A non-empty string.
    NonEmpty(String, "String"),
    |v| if v.is_empty() { Err("must not be empty".to_string()) } else { Ok(()) }
);
validated!(
    /// A basename or an absolute path glob.
    ExeMatch(String, "String"),
    |v| if v.starts_with('/') { Glob::new(&v).map(drop) } else { Basename::try_from(v.clone()).map(drop) }
);
validated!(
    /// An absolute path glob (`*`, `?`, `[a-z]` within a segment, `**` for any segments), or one
    /// starting with `~/` for every user's home directory.
    PathPattern(String, "String"),
    |v| {
        let abs = v.strip_prefix('~').unwrap_or(&v);
        if !abs.starts_with('/') {
            Err(format!("{v:?} is not an absolute path or ~/path"))
        } else {
            Glob::new(abs).map(drop)
        }
    }
);

// After the macros it uses.
pub mod syslog;

impl Default for Config {
    fn default() -> Self {
        Self {
            sensor: SensorConfig::default(),
            output: OutputConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            builtin_assistants: true,
            runtimes: crate::config::defaults::RUNTIMES.iter().map(|s| Basename(s.to_string())).collect(),
            assistants: crate::config::defaults::assistants(),
            categories: crate::config::defaults::categories(),
            variables: VariablesConfig::default(),
            correlation: CorrelationConfig::default(),
            destinations: defaults::destinations(),
            rules: defaults::rules(),
            detection: detection::DetectionConfig::default(),
            content: content::ContentConfig::default(),
        }
    }
}

impl Default for VariablesConfig {
    fn default() -> Self {
        Self {
            values: ValuePolicy::Host,
            getenv_probes: GetenvProbes::Session,
            libc: Vec::new(),
            watch: crate::config::defaults::variables(),
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            host_name: String::new(),
            max_tracked: MapSize(16384),
            max_sockets: MapSize(16384),
            ring_buffer_bytes: RingBufferSize(8 << 20),
            process_roots: true,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            format: OutputFormat::Auto,
            queue: MapSize(8192),
            schema: OutputSchema::Native,
            path: None,
            detail: OutputDetail::Summary,
            rollup_interval: RollupInterval(300),
            syslog: None,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_connections: ConnectionLimit(64),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: LogLevel::Info, kernel_level: KernelLogLevel::Warn, format: LogFormat::Text }
    }
}

/// A configuration error, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("refusing config file {path}: {why}")]
    Unsafe { path: String, why: String },
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid { path: String, line: usize, column: usize, field: String, message: String },
    #[error("{path}: {field}: {message}")]
    Semantic { path: String, field: String, message: String },
}

/// The file as written: `[categories]` and `[[assistants]]` are merged into the defaults.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ConfigFile {
    sensor: SensorConfig,
    output: OutputConfig,
    metrics: MetricsConfig,
    log: LogConfig,
    builtin_assistants: Option<bool>,
    runtimes: Option<Vec<Basename>>,
    assistants: Vec<AssistantRule>,
    categories: BTreeMap<String, Vec<PathPattern>>,
    variables: VariablesFile,
    correlation: CorrelationConfig,
    destinations: BTreeMap<String, Vec<String>>,
    rules: Vec<rules::RuleConfig>,
    detection: detection::DetectionConfig,
    content: content::ContentConfig,
}

/// `[variables]` as written: `watch` is merged per category into the defaults.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct VariablesFile {
    values: Option<ValuePolicy>,
    getenv_probes: Option<GetenvProbes>,
    libc: Option<Vec<String>>,
    watch: BTreeMap<String, Vec<VarName>>,
}

impl Config {
    /// Loads `path` over the built-in defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        check_permissions(path).map_err(|why| ConfigError::Unsafe { path: shown.clone(), why })?;
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Self::parse(&text, &shown)
    }

    /// Parses `text` (named `origin` in errors) over the built-in defaults.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file = deserialize(text, origin)?;
        let mut cfg = Config {
            sensor: file.sensor,
            output: file.output,
            metrics: file.metrics,
            log: file.log,
            builtin_assistants: file.builtin_assistants.unwrap_or(true),
            correlation: file.correlation,
            detection: file.detection,
            content: file.content,
            ..Config::default()
        };
        if !(1..=65536).contains(&cfg.detection.baseline_max_entries) {
            return Err(semantic(origin, "detection.baseline_max_entries", "must be 1 to 65536"));
        }
        if let Some(runtimes) = file.runtimes {
            cfg.runtimes = runtimes;
        }
        if !cfg.builtin_assistants {
            cfg.assistants.clear();
        }
        cfg.merge_assistants(file.assistants, origin)?;
        cfg.merge_destinations(file.destinations, origin)?;
        cfg.merge_rules(file.rules, origin)?;
        cfg.merge_variables(file.variables, origin)?;
        if let Some(s) = &cfg.output.syslog {
            s.check().map_err(|(field, why)| semantic(origin, &format!("output.syslog.{field}"), &why))?;
        }
        let classes: Vec<&str> = cfg.destinations.keys().map(String::as_str).collect();
        cfg.content
            .check(&classes)
            .map_err(|(field, why)| semantic(origin, &format!("content.{field}"), &why))?;
        for (name, patterns) in file.categories {
            check_category_name(origin, &format!("categories.{name}"), &name)?;
            cfg.categories.insert(name, patterns);
        }
        let categories: Vec<&str> =
            cfg.categories.keys().chain(cfg.variables.watch.keys()).map(String::as_str).collect();
        cfg.detection
            .prompt_rule
            .check(&categories)
            .map_err(|(field, why)| semantic(origin, &format!("detection.prompt_rule.{field}"), &why))?;
        Ok(cfg)
    }

    /// `[[assistants]]` replace built-ins of the same name and add the others.
    fn merge_assistants(&mut self, rules: Vec<AssistantRule>, origin: &str) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let field = format!("assistants[{i}]");
            if rule.name.is_empty() {
                return Err(semantic(origin, &field, "name must not be empty"));
            }
            if rule.exe.is_empty() && rule.comm.is_empty() && rule.argv.is_empty() {
                return Err(semantic(origin, &field, "needs at least one of exe, comm, argv"));
            }
            if !seen.insert(rule.name.clone()) {
                return Err(semantic(origin, &field, &format!("assistant {:?} is defined twice", rule.name)));
            }
            match self.assistants.iter_mut().find(|r| r.name == rule.name) {
                Some(existing) => *existing = rule,
                None => self.assistants.push(rule),
            }
        }
        Ok(())
    }

    fn merge_destinations(
        &mut self,
        destinations: BTreeMap<String, Vec<String>>,
        origin: &str,
    ) -> Result<(), ConfigError> {
        for (class, hosts) in destinations {
            if class == "other"
                || class == "base_url"
                || !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(semantic(
                    origin,
                    &format!("destinations.{class}"),
                    "a class name is [A-Za-z0-9_]+, not other or base_url",
                ));
            }
            self.destinations.insert(class, hosts);
        }
        Ok(())
    }

    /// `[[rules]]` replace built-ins of the same name and add the others.
    fn merge_rules(&mut self, rules: Vec<rules::RuleConfig>, origin: &str) -> Result<(), ConfigError> {
        for (i, rule) in rules.into_iter().enumerate() {
            let field = format!("rules[{i}]");
            if rule.groups.is_empty() || rule.groups.iter().any(Vec::is_empty) || rule.destinations.is_empty()
            {
                return Err(semantic(origin, &field, "needs non-empty groups and destinations"));
            }
            if let Some((j, e)) = rule
                .ignore
                .iter()
                .enumerate()
                .filter(|(_, p)| p.starts_with('/'))
                .find_map(|(j, p)| Some((j, glob::Glob::new(p).err()?)))
            {
                return Err(semantic(origin, &format!("{field}.ignore[{j}]"), &e));
            }
            if rule.min_groups == 0 || rule.min_groups > rule.groups.len() {
                return Err(semantic(
                    origin,
                    &field,
                    "min_groups must be between 1 and the number of groups",
                ));
            }
            match self.rules.iter_mut().find(|r| r.name == rule.name) {
                Some(existing) => *existing = rule,
                None => self.rules.push(rule),
            }
        }
        Ok(())
    }

    fn merge_variables(&mut self, v: VariablesFile, origin: &str) -> Result<(), ConfigError> {
        self.variables.values = v.values.unwrap_or(self.variables.values);
        self.variables.getenv_probes = v.getenv_probes.unwrap_or(self.variables.getenv_probes);
        if let Some(libc) = v.libc {
            if let Some(bad) = libc.iter().find(|p| !p.starts_with('/')) {
                return Err(semantic(origin, "variables.libc", &format!("{bad:?} is not an absolute path")));
            }
            self.variables.libc = libc;
        }
        for (name, names) in v.watch {
            check_category_name(origin, &format!("variables.watch.{name}"), &name)?;
            self.variables.watch.insert(name, names);
        }
        Ok(())
    }

    /// The effective configuration as TOML (what `aiwatch config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize config: {e}\n"))
    }
}

/// The file's own syntax and types, with the failing field's line and column.
fn deserialize(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError::Invalid {
            path: origin.to_string(),
            line,
            column,
            field: if field == "." { "(top level)".to_string() } else { field },
            message: inner.message().trim().to_string(),
        }
    })
}

fn check_category_name(origin: &str, field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(semantic(origin, field, "a category name is [A-Za-z0-9_]+"));
    }
    Ok(())
}

/// A config file others can write could turn the sensor off or blind it: refuse it. It must
/// be owned by root or by the user running aiwatch, and not writable by group or others.
fn check_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::metadata(path) else { return Ok(()) }; // reading reports it
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!("it is writable by group or others (mode {mode:04o}); chmod go-w it"));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if md.uid() != 0 && md.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by root or the user running aiwatch (uid {me})",
            md.uid()
        ));
    }
    Ok(())
}

fn semantic(path: &str, field: &str, message: &str) -> ConfigError {
    ConfigError::Semantic { path: path.to_string(), field: field.to_string(), message: message.to_string() }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
