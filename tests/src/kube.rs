//! What the shipped DaemonSet declares, read from `deploy/kubernetes/daemonset.yaml` so the tests
//! run the image the way it says (its lists are written in flow style, valid JSON).

use std::path::Path;

pub struct DaemonSet {
    pub text: String,
    /// The container's `args`.
    pub args: Vec<String>,
    /// `capabilities.add`.
    pub caps: Vec<String>,
    /// (host path, mount path, read-only) of each `hostPath` volume mounted.
    pub host_mounts: Vec<(String, String, bool)>,
    pub host_pid: bool,
    pub privileged: bool,
}

pub fn daemonset() -> DaemonSet {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(&file).expect("daemonset.yaml");
    let list = |key: &str| -> Vec<String> {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_else(|| panic!("no {key}"));
        serde_json::from_str(line.trim_start()[key.len()..].trim()).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(&format!("{key}: "))? + key.len() + 2..];
        Some(rest.split([',', '}']).next()?.trim().to_string())
    };
    // volumes: "- name: X" then "hostPath: { path: P, … }"; mounts: "- { name: X, mountPath: M … }".
    let mut host_paths = Vec::new();
    let mut last_name = None;
    for l in text.lines() {
        if let Some(n) = l.trim_start().strip_prefix("- name: ") {
            last_name = Some(n.trim().to_string());
        }
        if l.contains("hostPath:") {
            host_paths.push((last_name.clone().expect("volume name"), field(l, "path").expect("path")));
        }
    }
    let mut host_mounts = Vec::new();
    for l in text.lines().filter(|l| l.contains("mountPath:")) {
        let (name, at) = (field(l, "name").unwrap(), field(l, "mountPath").unwrap());
        if let Some((_, host)) = host_paths.iter().find(|(n, _)| *n == name) {
            host_mounts.push((host.clone(), at, l.contains("readOnly: true")));
        }
    }
    DaemonSet {
        args: list("args:"),
        caps: list("add:"),
        host_mounts,
        host_pid: text.contains("hostPID: true"),
        privileged: text.contains("privileged: true"),
        text,
    }
}
