//! `aiwatch audit [options] -- <assistant command…>`: runs an AI assistant several times under
//! controlled host variants (timezone, API base URL host, proxy, locale, host name, …), one
//! factor at a time, each run isolated in its own namespaces against a built-in recording LLM
//! API on loopback, and reports whether what it sends depends on the host — overtly
//! (disclosure) or covertly (encoding) — with the evidence, what aiwatch's sensor saw it read,
//! a verdict per factor and an exit status for allow-list pipelines. See docs/audit.md.
//!
//! Modules: `plan` (what to vary), `spec` (one run's host), `isolate` (namespaces, user, killing
//! a run), `reach` (whether the run user can reach the command, checked before any run),
//! `runner` (one run), `mock` + `answers` (the LLM API), `tls` (the throwaway CA),
//! `proxy` (the CONNECT proxy), `sensor` (aiwatch run alongside), `diff` (noise and signal),
//! `verdict` (per factor), `report` (terminal, Markdown, JSON, OCSF).

mod answers;
mod diff;
mod isolate;
mod mock;
pub mod plan;
mod proxy;
mod reach;
mod report;
mod runner;
mod sensor;
mod spec;
mod tls;
mod verdict;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

pub use verdict::exit;

/// `aiwatch audit` options.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Plan file (TOML) laid over the built-in plan (see --print-plan and docs/audit.md).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Print the built-in plan and exit.
    #[arg(long)]
    pub print_plan: bool,
    /// Audit only this factor of the plan (repeat for more).
    #[arg(long = "factor", value_name = "NAME")]
    pub factors: Vec<String>,
    /// Write the report as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the full result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write OCSF 1.3 Detection Findings (one JSON object per line) to FILE.
    #[arg(long, value_name = "FILE")]
    pub ocsf: Option<PathBuf>,
    /// Runs at once (default: the plan's; 0 = twice the CPUs, at most 8).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Seconds a run may take before its process tree is killed (default: the plan's, 120).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Run the assistant as this user (default: the user behind sudo; `nobody` for root).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Do not run aiwatch's sensor alongside (the report then lacks what the assistant read).
    #[arg(long)]
    pub no_sensor: bool,
    /// getenv probes of the audit's sensor: `system` (also a root's first reads; every process
    /// on the host pays a breakpoint per getenv during the audit) or `session`.
    #[arg(long, value_name = "MODE", default_value = "system", value_parser = ["system", "session"])]
    pub sensor_getenv: String,
    /// Keep each run's files (home, /etc overlay, stdout, stderr) under DIR.
    #[arg(long, value_name = "DIR")]
    pub keep_runs: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// The assistant's command line, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The entry point: runs the audit and returns its exit status (see [`exit`]).
pub fn main(args: AuditArgs) -> ExitCode {
    match audit(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aiwatch audit: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// `name` as an absolute path: relative to the working directory if it has a slash, else
/// searched in PATH.
fn resolve_command(name: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable =
        |p: &Path| p.is_file() && p.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    if name.contains('/') {
        let p = std::path::absolute(name).with_context(|| format!("resolving {name}"))?;
        if !p.exists() {
            bail!("command not found: {name} (no such file)");
        }
        if !executable(&p) {
            bail!("command not executable: {}", p.display());
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if executable(&p) {
            return std::path::absolute(&p).context("resolving the command");
        }
    }
    bail!("command not found: {name} (searched PATH={})", path.to_string_lossy())
}

fn audit(args: AuditArgs) -> anyhow::Result<u8> {
    if args.print_plan {
        print!("{}", plan::DEFAULT_PLAN);
        return Ok(exit::NO_EFFECT);
    }
    if args.command.is_empty() {
        bail!("no command to audit: aiwatch audit [OPTIONS] -- COMMAND [ARGS...]");
    }
    let mut plan = plan::Plan::load(args.plan.as_deref())?;
    plan.only(&args.factors).map_err(anyhow::Error::msg)?;
    if let Some(t) = args.timeout {
        if t == 0 {
            bail!("--timeout must be at least 1 second");
        }
        plan.timeout = Duration::from_secs(t);
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jobs = match args.jobs.unwrap_or(plan.jobs) {
        0 => (2 * cpus).min(8),
        n => n,
    };
    let resolved = resolve_command(&args.command[0])?;
    let mut command = args.command.clone();
    command[0] = resolved.display().to_string();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "aiwatch audit must run as root (it makes namespaces and loads the sensor); run it through sudo"
        );
    }
    let user = isolate::resolve_user(args.user.as_deref())?;

    let started = Instant::now();
    let started_wall = std::time::SystemTime::now();
    let (dir, keep_dirs) = match &args.keep_runs {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (std::path::absolute(d)?, true)
        }
        None => {
            let d = std::env::temp_dir().join(format!(
                "aiwatch-audit-{}-{}",
                std::process::id(),
                started_wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
            ));
            std::fs::create_dir_all(&d)?;
            (d, false)
        }
    };
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let setup = Setup { command, resolved, user, jobs, dir: dir.clone(), keep_dirs, started, started_wall };
    let result = run_audit(&args, plan, setup);
    if !keep_dirs {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// What `audit` settled before the runs: the command, who runs it, where its files go.
struct Setup {
    command: Vec<String>,
    resolved: PathBuf,
    user: isolate::RunUser,
    jobs: usize,
    dir: PathBuf,
    keep_dirs: bool,
    started: Instant,
    started_wall: std::time::SystemTime,
}

fn run_audit(args: &AuditArgs, plan: plan::Plan, setup: Setup) -> anyhow::Result<u8> {
    let runner = make_runner(&plan, &setup)?;
    // One clear error rather than every run failing the same way.
    let probe = spec::RunSpec::baseline(&plan, &runner.common, 0);
    if let Some(b) = runner.reach_check(&probe).context("checking that the run user can reach the command")? {
        bail!("{}", reach::message(&b, &setup.user, &runner.common.workdir()));
    }
    let sensor_dir = setup.dir.join("sensor");
    std::fs::create_dir_all(&sensor_dir)?;
    // Started before the first run.
    let (sensor, sensor_state) = start_sensor(args, &sensor_dir, &setup.command);
    let outcomes = match execute(&runner, &plan, setup.jobs, args.quiet) {
        Ok(o) => o,
        Err(e) => {
            if let Some(s) = sensor {
                let _ = s.stop();
            }
            return Err(e);
        }
    };
    let looked = sensor.map(|s| sensor_looked(s, &outcomes)).unwrap_or_default();
    let eval = verdict::evaluate(&plan, &outcomes, &looked);
    let code = match eval.verdict() {
        verdict::Verdict::NoEffect => exit::NO_EFFECT,
        verdict::Verdict::HostDependentContent => exit::HOST_DEPENDENT,
        verdict::Verdict::Inconclusive => exit::INCONCLUSIVE,
    };
    let result = report::AuditResult::new(report::Inputs {
        command: &args.command,
        resolved: &setup.resolved,
        user: &setup.user,
        plan: &plan,
        jobs: setup.jobs,
        started_wall: setup.started_wall,
        duration: setup.started.elapsed(),
        sensor: sensor_state,
        eval,
        outcomes: &outcomes,
        looked: &looked,
        code,
    });
    print!("{}", report::terminal(&result));
    write_outputs(args, &result)?;
    Ok(code)
}

/// The runner: the audit's CA, the runs' PATH (the command's directory first) and the paths
/// under /home and /tmp the command needs bound into the runs.
fn make_runner(plan: &plan::Plan, setup: &Setup) -> anyhow::Result<Arc<runner::Runner>> {
    let ca = tls::Ca::new()?;
    let tls = tokio_rustls::TlsAcceptor::from(ca.server_config()?);
    let invoking_path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let resolved = &setup.resolved;
    let cmd_dir = resolved.parent().map(|p| p.display().to_string()).unwrap_or_default();
    let path = if invoking_path.split(':').any(|p| p == cmd_dir) {
        invoking_path.clone()
    } else {
        format!("{cmd_dir}:{invoking_path}")
    };
    let mut keep_paths: Vec<PathBuf> = vec![resolved.clone()];
    keep_paths.extend(resolved.canonicalize().ok());
    keep_paths.extend(std::env::split_paths(&path));
    // An interpreter's script (`node /tmp/x/agent.js`).
    if let Some(a) = setup.command.get(1).filter(|a| a.contains('/')) {
        if let Ok(p) = std::path::absolute(a) {
            keep_paths.extend(p.canonicalize().ok());
            keep_paths.push(p);
        }
    }
    // What the reach check walks (a `#!` interpreter, a script argument) is kept visible too.
    for t in reach::targets(&setup.command, &path) {
        for p in t.paths.iter().filter(|p| p.is_absolute()) {
            keep_paths.extend(p.canonicalize().ok());
            keep_paths.push(p.clone());
        }
    }
    Ok(Arc::new(runner::Runner {
        user: setup.user.clone(),
        command: setup.command.clone(),
        common: spec::Common { user: setup.user.name.clone(), path, ca_pem: ca.pem() },
        tls,
        dir: setup.dir.clone(),
        keeps: isolate::keeps_for(&keep_paths),
        timeout: plan.timeout,
        keep_dirs: setup.keep_dirs,
    }))
}

/// aiwatch's sensor alongside the runs, and how the report describes it.
fn start_sensor(args: &AuditArgs, dir: &Path, command: &[String]) -> (Option<sensor::Sensor>, String) {
    if args.no_sensor {
        return (None, "off (--no-sensor)".to_string());
    }
    match sensor::Sensor::start(dir, command, &args.sensor_getenv) {
        Ok(s) => (Some(s), format!("aiwatch run (getenv probes: {})", args.sensor_getenv)),
        Err(e) => {
            eprintln!("aiwatch audit: warning: the sensor did not start, the report lacks what the assistant read: {e:#}");
            (None, format!("unavailable: {}", format!("{e:#}").lines().next().unwrap_or("")))
        }
    }
}

/// The baseline runs; the variants if at least two baseline runs called the API (else they
/// cannot be compared and are not run); one more baseline run if a variant differs.
fn execute(
    runner: &Arc<runner::Runner>,
    plan: &plan::Plan,
    jobs: usize,
    quiet: bool,
) -> anyhow::Result<Vec<runner::Outcome>> {
    let common = &runner.common;
    let mut specs: Vec<Arc<spec::RunSpec>> =
        (1..=plan.baseline_runs).map(|n| Arc::new(spec::RunSpec::baseline(plan, common, n))).collect();
    let n_baseline = specs.len();
    specs.extend(plan.variants().iter().map(|v| Arc::new(spec::RunSpec::variant(plan, common, v))));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pb = progress(specs.len() as u64, quiet);
    let base: Vec<(usize, Arc<spec::RunSpec>)> = specs[..n_baseline].iter().cloned().enumerate().collect();
    let mut outcomes = rt.block_on(run_many(runner, base, jobs, &pb));
    if outcomes.iter().filter(|o| o.llm_calls() > 0).count() < 2 {
        pb.finish_and_clear();
        if let Some(p) = outcomes.iter().find_map(|o| o.status.not_started().map(str::to_string)) {
            bail!("the command could not be started: {p}");
        }
        return Ok(outcomes);
    }
    let rest: Vec<(usize, Arc<spec::RunSpec>)> = specs.iter().cloned().enumerate().skip(n_baseline).collect();
    outcomes.extend(rt.block_on(run_many(runner, rest, jobs, &pb)));
    // Noise is learned better before judging.
    let eval = verdict::evaluate(plan, &outcomes, &BTreeMap::new());
    if plan.extra_baseline_on_difference && eval.baseline_problem.is_none() && eval.any_difference() {
        pb.inc_length(1);
        let extra = Arc::new(spec::RunSpec::baseline(plan, common, plan.baseline_runs + 1));
        let idx = outcomes.len();
        outcomes.extend(rt.block_on(run_many(runner, vec![(idx, extra)], jobs, &pb)));
    }
    pb.finish_and_clear();
    Ok(outcomes)
}

/// What the sensor saw each run's processes read, by run index.
fn sensor_looked(s: sensor::Sensor, outcomes: &[runner::Outcome]) -> BTreeMap<usize, sensor::Looked> {
    let mut looked = BTreeMap::new();
    match s.stop() {
        Ok(records) => {
            let roots: Vec<u32> = outcomes.iter().filter_map(|o| o.root_pid).collect();
            let by_root = sensor::summarize(&records, &roots);
            for o in outcomes {
                if let Some(l) = o.root_pid.and_then(|p| by_root.get(&p)) {
                    looked.insert(o.index, l.clone());
                }
            }
        }
        Err(e) => eprintln!("aiwatch audit: warning: reading the sensor's records: {e:#}"),
    }
    looked
}

fn write_outputs(args: &AuditArgs, result: &report::AuditResult) -> anyhow::Result<()> {
    if let Some(p) = &args.report {
        std::fs::write(p, report::markdown(result)).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(result)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.ocsf {
        let lines: String = report::ocsf(result).iter().map(|v| format!("{v}\n")).collect();
        std::fs::write(p, lines).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn progress(total: u64, quiet: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix("aiwatch audit");
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

async fn run_many(
    runner: &Arc<runner::Runner>,
    specs: Vec<(usize, Arc<spec::RunSpec>)>,
    jobs: usize,
    pb: &indicatif::ProgressBar,
) -> Vec<runner::Outcome> {
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in specs {
        let (sem, runner, pb) = (sem.clone(), runner.clone(), pb.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            pb.set_message(s.label.clone());
            let o = runner.run(s, i).await;
            pb.inc(1);
            o
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(o) = r {
            out.push(o);
        }
    }
    out.sort_by_key(|o| o.index);
    out
}
