//! Command line: `aiwatch run | check | config | status | completions | man | audit`; `run.rs`,
//! `check.rs` and `audit/` are what `run`, `check` and `audit` run.

pub mod audit;
pub mod check;
pub mod run;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, KernelLogLevel, LogFormat, LogLevel, OutputFormat};

#[derive(Debug, Parser)]
#[command(
    name = "aiwatch",
    version,
    about = "eBPF sensor that watches AI coding assistants fingerprint their host"
)]
pub struct Cli {
    /// Configuration file (TOML) over the built-in defaults; none means the defaults alone.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the probes and report assistants' fingerprint reads until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Show which kernel features this host offers and which the sensor uses.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration (defaults merged with --config) as TOML.
    Config,
    /// Show the active assistant sessions of a running aiwatch (its loopback /status endpoint).
    Status {
        /// Address of the running aiwatch's metrics/status endpoint (default: metrics.listen).
        #[arg(long, value_name = "ADDR")]
        address: Option<SocketAddr>,
        /// Print the JSON as served.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// Run an assistant under controlled host variants and report whether what it sends to its
    /// API depends on the host (`aiwatch audit [OPTIONS] -- COMMAND...`; exit 0 no effect, 1
    /// host-dependent content, 2 error, 3 inconclusive).
    Audit(audit::AuditArgs),
}

#[derive(Debug, clap::Args, Default)]
pub struct RunArgs {
    /// Event output: auto (human on a terminal, JSON otherwise), json, human, or none (metrics only).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
    /// Event schema: native (aiwatch.v1) or ocsf.
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<crate::config::OutputSchema>,
    /// What is sent: summary (session rollups and first reads), reads, or all.
    #[arg(long, value_name = "DETAIL")]
    pub detail: Option<crate::config::OutputDetail>,
    /// Write events to this file (reopened on SIGHUP) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Address of the Prometheus endpoint.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Do not serve metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// Daemon log level: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Daemon log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Kernel-side diagnostics level: off, error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL")]
    pub kernel_log_level: Option<KernelLogLevel>,
}

impl RunArgs {
    fn apply(&self, cfg: &mut Config) {
        if let Some(f) = self.format {
            cfg.output.format = f;
        }
        if let Some(s) = self.schema {
            cfg.output.schema = s;
        }
        if let Some(d) = self.detail {
            cfg.output.detail = d;
        }
        if let Some(p) = &self.output {
            cfg.output.path = Some(p.clone());
        }
        if let Some(a) = self.metrics_listen {
            cfg.metrics.listen = a;
        }
        if self.no_metrics {
            cfg.metrics.enabled = false;
        }
        if let Some(l) = self.log_level {
            cfg.log.level = l;
        }
        if let Some(f) = self.log_format {
            cfg.log.format = f;
        }
        if let Some(l) = self.kernel_log_level {
            cfg.log.kernel_level = l;
        }
    }
}

/// A GET on a loopback HTTP/1.1 endpoint; the body, or an error for a non-200 answer.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{}", head.lines().next().unwrap_or(head));
    }
    Ok(body.to_string())
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

fn init_logging(cfg: &Config) {
    let default = format!(
        "{},sensor_ebpf={}",
        cfg.log.level,
        match cfg.log.kernel_level {
            KernelLogLevel::Off => "off".to_string(),
            l => l.to_string(),
        }
    );
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // try_init also routes `log` records (aya-log's kernel diagnostics) into tracing.
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aiwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // The audit has its own exit statuses and no daemon configuration.
    if let Command::Audit(args) = cli.command {
        return Ok(audit::main(args));
    }
    let mut cfg = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Config => {
            print!("{}", cfg.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { address, json } => {
            let addr = address.unwrap_or(cfg.metrics.listen);
            let body = http_get(addr, "/status").with_context(|| {
                format!("cannot reach aiwatch at {addr} (is it running, with metrics enabled?)")
            })?;
            if json {
                println!("{body}");
            } else {
                let s: crate::output::status::Status = serde_json::from_str(&body)
                    .with_context(|| format!("unexpected answer from {addr}/status"))?;
                print!("{}", crate::output::status::render(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "aiwatch", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("rendering the man page")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { json } => {
            init_logging(&Config {
                log: crate::config::LogConfig { level: LogLevel::Warn, ..cfg.log.clone() },
                ..cfg.clone()
            });
            let report = crate::cmd::check::report(&cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.human());
            }
            Ok(if report.ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Audit(_) => unreachable!("dispatched above"),
        Command::Run(args) => {
            args.apply(&mut cfg);
            init_logging(&cfg);
            // Start-up first, on this thread alone: it drops capabilities, which are per thread.
            let started = crate::cmd::run::start(cfg, cli.config.clone())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(crate::cmd::run::run(started))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse_and_override_config() {
        let cli = Cli::try_parse_from([
            "aiwatch",
            "run",
            "--format",
            "json",
            "--metrics-listen",
            "127.0.0.1:9999",
            "--kernel-log-level",
            "debug",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        let mut cfg = Config::default();
        args.apply(&mut cfg);
        assert_eq!(cfg.output.format, OutputFormat::Json);
        assert_eq!(cfg.metrics.listen.port(), 9999);
        assert_eq!(cfg.log.kernel_level, KernelLogLevel::Debug);
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = Cli::try_parse_from(["aiwatch", "run", "--format", "xml"]).unwrap_err().to_string();
        assert!(e.contains("--format") && e.contains("expected one of: auto, json, human, none"), "{e}");
        let e = Cli::try_parse_from(["aiwatch", "run", "--metrics-listen", "nope"]).unwrap_err().to_string();
        assert!(e.contains("--metrics-listen"), "{e}");
        let e = Cli::try_parse_from(["aiwatch", "run", "--bogus"]).unwrap_err().to_string();
        assert!(e.contains("--bogus"), "{e}");
    }
}
