//! Config parsing, defaults and validation.

use super::*;

fn err(text: &str) -> String {
    Config::parse(text, "test.toml").unwrap_err().to_string()
}

#[test]
fn defaults_round_trip_through_toml() {
    let cfg = Config::default();
    let again = Config::parse(&cfg.to_toml(), "printed").expect("printed config parses");
    assert_eq!(cfg, again);
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(Config::parse("", "x").unwrap(), Config::default());
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let e = err("[metrics]\nenabled = true\nlisten_addr = \"1.2.3.4:1\"\n");
    assert!(e.starts_with("test.toml:3:1: metrics.listen_addr: unknown field `listen_addr`"), "{e}");
}

#[test]
fn bad_value_names_line_and_field() {
    let e = err("[sensor]\nring_buffer_bytes = 1000\n");
    assert!(e.starts_with("test.toml:2:21: sensor.ring_buffer_bytes:"), "{e}");
    assert!(e.contains("not a power of two"), "{e}");
    let e = err("[metrics]\nlisten = \"localhost\"\n");
    assert!(e.starts_with("test.toml:2:10: metrics.listen:"), "{e}");
    let e = err("[output]\nformat = \"xml\"\n");
    assert!(e.contains("output.format") && e.contains("unknown variant `xml`"), "{e}");
}

#[test]
fn metrics_connection_limit_is_validated() {
    assert_eq!(Config::default().metrics.max_connections, ConnectionLimit(64));
    let cfg = Config::parse("[metrics]\nmax_connections = 4096\n", "x").unwrap();
    assert_eq!(cfg.metrics.max_connections, ConnectionLimit(4096));
    for bad in ["0", "4097", "-1"] {
        let e = err(&format!("[metrics]\nmax_connections = {bad}\n"));
        assert!(e.starts_with("test.toml:2:19: metrics.max_connections:"), "{e}");
    }
    assert!(err("[metrics]\nmax_connections = 0\n").contains("0 is out of range 1..=4096"));
    assert!(err("[metrics]\nmax_connections = \"many\"\n").contains("metrics.max_connections"));
}

#[test]
fn bad_pattern_and_syntax_errors() {
    let e = err("[categories]\ntimezone = [\"etc/localtime\"]\n");
    assert!(
        e.starts_with("test.toml:2:")
            && e.contains("categories.timezone[0]:")
            && e.contains("not an absolute path"),
        "{e}"
    );
    let e = err("[categories]\ntimezone = [\"/etc/[abc\"]\n");
    assert!(e.contains("categories.timezone[0]") && e.contains("unclosed"), "{e}");
    let e = err("[sensor\n");
    assert!(e.starts_with("test.toml:1:"), "{e}");
}

#[test]
fn categories_override_per_key_and_assistants_by_name() {
    let cfg = Config::parse(
        "[categories]\ntimezone = [\"/opt/tz\"]\ncustom = [\"/srv/x/**\"]\n\
         [[assistants]]\nname = \"claude-code\"\ncomm = [\"myclaude\"]\n\
         [[assistants]]\nname = \"inhouse\"\nargv = [\"inhouse-agent\"]\n",
        "x",
    )
    .unwrap();
    assert_eq!(cfg.categories["timezone"], vec![PathPattern("/opt/tz".into())]);
    assert!(cfg.categories.contains_key("network_config"));
    assert!(cfg.categories.contains_key("custom"));
    let claude = cfg.assistants.iter().find(|r| r.name == "claude-code").unwrap();
    assert_eq!(claude.comm, vec![Basename("myclaude".into())]);
    assert!(claude.argv.is_empty());
    assert!(cfg.assistants.iter().any(|r| r.name == "inhouse"));
    assert!(cfg.assistants.iter().any(|r| r.name == "gemini-cli"));
}

#[test]
fn variables_section() {
    let cfg = Config::parse(
        "[variables]\nvalues = \"none\"\ngetenv_probes = \"off\"\n[variables.watch]\nkeys = [\"*_API_KEY\"]\n",
        "x",
    )
    .unwrap();
    assert_eq!(cfg.variables.values, ValuePolicy::None);
    assert_eq!(cfg.variables.getenv_probes, GetenvProbes::Off);
    assert!(cfg.variables.watch.contains_key("keys") && cfg.variables.watch.contains_key("proxy"));
    let e = err("[variables.watch]\nproxy = [\"HTTP PROXY\"]\n");
    assert!(e.contains("variables.watch.proxy[0]") && e.contains("not a variable name"), "{e}");
    let e = err("[variables]\ngetenv_probes = \"always\"\n");
    assert!(e.contains("variables.getenv_probes"), "{e}");
}

#[test]
fn semantic_errors() {
    let e = err("[[assistants]]\nname = \"a\"\n");
    assert_eq!(e, "test.toml: assistants[0]: needs at least one of exe, comm, argv");
    let e = err("[[assistants]]\nname = \"a\"\ncomm=[\"a\"]\n[[assistants]]\nname = \"a\"\ncomm=[\"b\"]\n");
    assert!(e.contains("assistants[1]") && e.contains("defined twice"), "{e}");
    let cfg = Config::parse("builtin_assistants = false\n", "x").unwrap();
    assert!(cfg.assistants.is_empty());
}

#[test]
fn config_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("aiwatch-perm-{}.toml", std::process::id()));
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("writable by group or others (mode 0666)"), "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(Config::load(&path).is_ok());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn missing_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/aiwatch.toml")).unwrap_err().to_string();
    assert!(e.starts_with("cannot read config file /nonexistent/aiwatch.toml:"), "{e}");
}

#[test]
fn output_detail_and_rollup_interval_are_validated() {
    assert_eq!(Config::default().output.detail, OutputDetail::Summary);
    let cfg = Config::parse("[output]\ndetail = \"reads\"\nrollup_interval = 60\n", "x").unwrap();
    assert_eq!((cfg.output.detail, cfg.output.rollup_interval.0), (OutputDetail::Reads, 60));
    let e = err("[output]\ndetail = \"verbose\"\n");
    assert!(e.starts_with("test.toml:2:10: output.detail:"), "{e}");
    assert!(e.contains("unknown variant `verbose`, expected one of `summary`, `reads`, `all`"), "{e}");
    let e = err("[output]\nrollup_interval = 1\n");
    assert!(e.starts_with("test.toml:2:19: output.rollup_interval:") && e.contains("10..=86400"), "{e}");
}

#[test]
fn prompt_rule_is_on_by_default_and_its_values_are_checked() {
    let d = Config::default().detection.prompt_rule;
    assert!(d.enabled && d.learning_sessions == 3 && d.usual_sessions == 2, "{d:?}");
    let cfg = Config::parse(
        "[detection.prompt_rule]\nenabled = false\nusual_sessions = 5\ndate_reads = [\"locale\"]\n",
        "x",
    )
    .unwrap();
    let p = cfg.detection.prompt_rule;
    assert!(!p.enabled && p.usual_sessions == 5 && p.date_reads == ["locale"], "{p:?}");
    let e = err("[detection.prompt_rule]\nlearning_sessions = 0\n");
    assert_eq!(e, "test.toml: detection.prompt_rule.learning_sessions: must be 1 to 100000 (sessions)");
    let e = err("[detection.prompt_rule]\nusual_sessions = 0\n");
    assert!(e.contains("detection.prompt_rule.usual_sessions"), "{e}");
    let e = err("[detection.prompt_rule]\nmax_entries = 0\n");
    assert!(e.contains("detection.prompt_rule.max_entries: must be 1 to 65536"), "{e}");
    let e = err("[detection.prompt_rule]\ndate_reads = [\"timezone\", \"tz\"]\n");
    assert_eq!(e, "test.toml: detection.prompt_rule.date_reads[1]: \"tz\" is not a category");
    let e = err("[detection.prompt_rule]\ndate_reads = []\n");
    assert!(e.contains("date_reads: must name at least one category"), "{e}");
    let e = err("[detection.prompt_rule]\nmarker_severity = \"severe\"\n");
    assert!(e.starts_with("test.toml:2:19: detection.prompt_rule.marker_severity:"), "{e}");
    let e = err("[detection.prompt_rule]\nthreshold = 1\n");
    assert!(e.contains("unknown field `threshold`"), "{e}");
}
