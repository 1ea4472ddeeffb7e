//! The same records in OCSF 1.3: Process Activity (1007), File System Activity (1001), Network
//! Activity (4001), DNS Activity (4003), Detection Finding (2004). What OCSF has no field for
//! stays under `unmapped.aiwatch`.

use serde_json::{json, Map, Value};

use crate::output::{
    report::{Body, ConnectionRecord, FindingRecord, FingerprintRead, ProcessRef, Record, SessionRef},
    rollup::session::SessionRollup,
};

pub const VERSION: &str = "1.3.0";

struct Class {
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
}

const PROCESS: Class = Class {
    category_uid: 1,
    category_name: "System Activity",
    class_uid: 1007,
    class_name: "Process Activity",
};
const FILE: Class = Class {
    category_uid: 1,
    category_name: "System Activity",
    class_uid: 1001,
    class_name: "File System Activity",
};
const NETWORK: Class = Class {
    category_uid: 4,
    category_name: "Network Activity",
    class_uid: 4001,
    class_name: "Network Activity",
};
const DNS: Class =
    Class { category_uid: 4, category_name: "Network Activity", class_uid: 4003, class_name: "DNS Activity" };
const HTTP: Class = Class {
    category_uid: 4,
    category_name: "Network Activity",
    class_uid: 4002,
    class_name: "HTTP Activity",
};
const FINDING: Class =
    Class { category_uid: 2, category_name: "Findings", class_uid: 2004, class_name: "Detection Finding" };

fn process(p: &ProcessRef) -> Value {
    let name = p.exe.rsplit('/').next().unwrap_or(&p.comm);
    json!({
        "pid": p.pid,
        "tid": p.tid,
        "name": p.comm,
        "cmd_line": p.argv.join(" "),
        "file": { "path": p.exe, "name": name, "type_id": 1 },
        "user": { "uid": p.uid.to_string() },
        "parent_process": { "pid": p.ppid },
    })
}

fn actor(p: &ProcessRef, s: &SessionRef) -> Value {
    json!({ "process": process(p), "session": { "uid": s.id }, "app_name": s.assistant })
}

/// Common fields of every class.
fn base(r: &Record, c: &Class, activity_id: u32, activity_name: &str, severity_id: u8) -> Map<String, Value> {
    let time_ms = humantime::parse_rfc3339(&r.time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let severity = match severity_id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        _ => "Unknown",
    };
    let v = json!({
        "category_uid": c.category_uid,
        "category_name": c.category_name,
        "class_uid": c.class_uid,
        "class_name": c.class_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": c.class_uid * 100 + activity_id,
        "type_name": format!("{}: {activity_name}", c.class_name),
        "severity_id": severity_id,
        "severity": severity,
        "time": time_ms,
        "metadata": {
            "version": VERSION,
            "product": { "name": "aiwatch", "vendor_name": "aiwatch", "version": env!("CARGO_PKG_VERSION") },
            "log_name": r.schema,
            "original_time": r.time,
        },
        "device": { "hostname": r.host, "type_id": 0 },
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn unmapped(m: &mut Map<String, Value>, extra: Value) {
    m.insert("unmapped".into(), json!({ "aiwatch": extra }));
}

/// The OCSF form of a record.
pub fn to_ocsf(r: &Record) -> Value {
    let mut m;
    match &r.body {
        Body::SessionStart { session, process: p, found_by, environment } => {
            m = base(r, &PROCESS, 1, "Launch", 1);
            m.insert("process".into(), process(p));
            m.insert("actor".into(), actor(p, session));
            unmapped(
                &mut m,
                json!({ "type": "session_start", "assistant": session.assistant, "found_by": found_by, "environment": environment }),
            );
        }
        Body::SessionEnd { session, duration_ms } => {
            m = base(r, &PROCESS, 2, "Terminate", 1);
            m.insert(
                "process".into(),
                json!({ "pid": session.root_pid, "user": { "uid": session.uid.to_string() } }),
            );
            m.insert(
                "actor".into(),
                json!({ "session": { "uid": session.id }, "app_name": session.assistant }),
            );
            unmapped(&mut m, json!({ "type": "session_end", "duration_ms": duration_ms }));
        }
        Body::SessionRollup(rollup) => m = session_rollup(r, rollup),
        Body::ProcessExec { session, process: p, reader, environment } => {
            m = base(r, &PROCESS, 1, "Launch", 1);
            m.insert("process".into(), process(p));
            m.insert("actor".into(), actor(p, session));
            unmapped(&mut m, json!({ "type": "process_exec", "reader": reader, "environment": environment }));
        }
        Body::FingerprintRead(f) => m = fingerprint_read(r, f),
        Body::EnvRead { session, process: p, reader, variable, category, set, function } => {
            m = base(r, &PROCESS, 99, "Environment Variable Read", 1);
            m.insert("process".into(), process(p));
            m.insert("actor".into(), actor(p, session));
            unmapped(
                &mut m,
                json!({ "type": "env_read", "reader": reader, "variable": variable, "category": category, "set": set, "function": function }),
            );
        }
        Body::InterfaceQuery {
            session,
            process: p,
            reader,
            method,
            request,
            interface,
            dump,
            result,
            categories,
        } => {
            m = base(r, &PROCESS, 99, "Network Interface Enumeration", 1);
            m.insert("process".into(), process(p));
            m.insert("actor".into(), actor(p, session));
            unmapped(
                &mut m,
                json!({ "type": "interface_query", "reader": reader, "method": method, "request": request,
                        "interface": interface, "dump": dump, "result": result, "categories": categories }),
            );
        }
        Body::HostQuery { session, process: p, reader, request, category } => {
            m = base(r, &PROCESS, 99, "Host Identity Query", 1);
            m.insert("process".into(), process(p));
            m.insert("actor".into(), actor(p, session));
            unmapped(
                &mut m,
                json!({ "type": "host_query", "reader": reader, "request": request, "category": category }),
            );
        }
        Body::UnixConnect { session, process: p, reader, fd, path, result } => {
            m = base(r, &PROCESS, 99, "Local Socket Connect", 1);
            m.insert("process".into(), process(p));
            m.insert("actor".into(), actor(p, session));
            m.insert("status_id".into(), json!(if *result == 0 { 1 } else { 2 }));
            unmapped(
                &mut m,
                json!({ "type": "unix_connect", "reader": reader, "fd": fd, "path": path, "result": result }),
            );
        }
        Body::CompatSyscall(c) => {
            // Low, not informational: a 64-bit process rarely has a reason to use int $0x80.
            m = base(r, &PROCESS, 99, "32-bit Syscall", 2);
            m.insert("process".into(), process(&c.process));
            m.insert("actor".into(), actor(&c.process, &c.session));
            if let Some(p) = &c.resolved_path {
                m.insert(
                    "file".into(),
                    json!({ "path": p, "name": p.rsplit('/').next().unwrap_or(""), "type_id": 1 }),
                );
            }
            unmapped(
                &mut m,
                json!({ "type": "compat_syscall", "reader": c.reader, "abi": c.abi, "number": c.number,
                        "syscall": c.syscall, "socketcall": c.socketcall, "args": c.args, "path": c.path,
                        "absolute_path": c.absolute_path, "categories": c.categories, "address": c.address,
                        "read_failed": c.read_failed }),
            );
        }
        Body::ConnectionOpen(c) | Body::ConnectionClose(c) => m = connection(r, c),
        Body::DnsLookup { session, process: p, reader, dns } => {
            m = base(r, &DNS, 2, "Response", 1);
            m.insert("query".into(), json!({ "hostname": dns.name, "type": dns.qtype.to_string() }));
            m.insert(
                "answers".into(),
                Value::Array(dns.answers.iter().map(|a| json!({ "rdata": a })).collect()),
            );
            m.insert("rcode_id".into(), json!(dns.rcode));
            m.insert("dst_endpoint".into(), json!({ "ip": dns.resolver, "port": 53 }));
            m.insert("actor".into(), actor(p, session));
            unmapped(&mut m, json!({ "type": "dns_lookup", "reader": reader, "protocol": dns.protocol }));
        }
        Body::Finding(f) => m = finding(r, f),
        Body::PromptMarkers(p) => m = prompt_markers(r, p),
    }
    Value::Object(m)
}

/// A request to an LLM API: HTTP Activity (`Post`, `Put`, or `Other`), the destination and
/// path; the markers (never the text) under `unmapped`.
fn prompt_markers(r: &Record, p: &crate::output::report::PromptMarkersRecord) -> Map<String, Value> {
    let (id, name) = match p.request.method.as_str() {
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        _ => (99, "Other"),
    };
    let mut m = base(r, &HTTP, id, name, 1);
    let mut dst = json!({ "ip": p.destination.addr, "port": p.destination.port });
    if let Some(h) = &p.destination.host {
        dst["hostname"] = json!(h);
    }
    m.insert("dst_endpoint".into(), dst);
    m.insert(
        "http_request".into(),
        json!({ "http_method": p.request.method, "url": { "path": p.request.path, "hostname": p.destination.host } }),
    );
    m.insert("actor".into(), actor(&p.process, &p.session));
    unmapped(
        &mut m,
        json!({ "type": "prompt_markers", "reader": p.reader, "connection_id": p.connection_id,
                "destination_class": p.destination_class, "request": p.request, "markers": p.found.markers,
                "dates": p.found.dates, "shape": p.found.shape, "error": p.error }),
    );
    m
}

/// A session's profile: an aggregate of Process Activity, as OCSF aggregates events (`count`,
/// `start_time`, `end_time`), the artifacts and destinations as `observables` (file names,
/// hostnames) and in full under `unmapped`.
fn session_rollup(r: &Record, s: &SessionRollup) -> Map<String, Value> {
    let mut m = base(r, &PROCESS, 99, "Session Rollup", 1);
    let ms = |t: &str| {
        humantime::parse_rfc3339(t)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    };
    m.insert("start_time".into(), json!(ms(&s.first)));
    m.insert("end_time".into(), json!(ms(&s.last)));
    m.insert("count".into(), json!(s.records_sent + s.records_summarized));
    m.insert(
        "process".into(),
        json!({ "pid": s.session.root_pid, "user": { "uid": s.session.uid.to_string() } }),
    );
    m.insert("actor".into(), json!({ "session": { "uid": s.session.id }, "app_name": s.session.assistant }));
    let files = s
        .artifacts
        .iter()
        .filter(|a| a.kind == "file")
        .map(|a| json!({ "name": "file.path", "type_id": 7, "value": a.artifact }));
    let hosts = s
        .egress
        .iter()
        .map(|e| json!({ "name": "dst_endpoint.hostname", "type_id": 1, "value": e.destination }));
    m.insert("observables".into(), Value::Array(files.chain(hosts).collect()));
    unmapped(
        &mut m,
        json!({ "type": "session_rollup", "final": s.is_final, "records_sent": s.records_sent,
                "records_summarized": s.records_summarized, "artifacts": s.artifacts, "egress": s.egress,
                "overflow": s.overflow }),
    );
    m
}

fn fingerprint_read(r: &Record, f: &FingerprintRead) -> Map<String, Value> {
    let (id, name) =
        if matches!(f.syscall, "open" | "openat" | "openat2") { (14, "Open") } else { (8, "Get Attributes") };
    let mut m = base(r, &FILE, id, name, 1);
    let fname = f.resolved_path.rsplit('/').next().unwrap_or("");
    m.insert("file".into(), json!({ "path": f.resolved_path, "name": fname, "type_id": 1 }));
    m.insert("actor".into(), actor(&f.process, &f.session));
    m.insert("status_id".into(), json!(if f.success { 1 } else { 2 }));
    m.insert("status".into(), json!(if f.success { "Success" } else { "Failure" }));
    if let Some(e) = &f.errno {
        m.insert("status_detail".into(), json!(e));
    }
    unmapped(
        &mut m,
        json!({ "type": "fingerprint_read", "category": f.category, "categories": f.categories, "reader": f.reader,
                "syscall": f.syscall, "path": f.path, "absolute_path": f.absolute_path, "target_path": f.target_path,
                "target_pid": f.target_pid, "result": f.result }),
    );
    m
}

fn connection(r: &Record, c: &ConnectionRecord) -> Map<String, Value> {
    let k = &c.connection;
    let open = matches!(r.body, Body::ConnectionOpen(_));
    let (id, name) = match (open, k.result) {
        (_, "failed") => (4, "Fail"),
        (true, _) => (1, "Open"),
        (false, _) => (2, "Close"),
    };
    let mut m = base(r, &NETWORK, id, name, 1);
    let v6 = k.remote_addr.contains(':');
    m.insert(
        "connection_info".into(),
        json!({ "protocol_name": k.protocol, "direction_id": 2, "direction": "Outbound", "protocol_ver_id": if v6 { 6 } else { 4 }, "uid": k.id }),
    );
    let mut dst = json!({ "ip": k.remote_addr, "port": k.remote_port });
    if let Some(h) = &k.host {
        dst["hostname"] = json!(h);
    }
    if k.proxy {
        m.insert("proxy_endpoint".into(), json!({ "ip": k.remote_addr, "port": k.remote_port }));
        dst = json!({ "hostname": k.host });
    }
    m.insert("dst_endpoint".into(), dst);
    if let Some(p) = k.local_port {
        m.insert("src_endpoint".into(), json!({ "port": p }));
    }
    m.insert("traffic".into(), json!({ "bytes_out": k.bytes_sent, "bytes_in": k.bytes_received }));
    if let Some(sni) = &k.tls_sni {
        m.insert("tls".into(), json!({ "sni": sni }));
    }
    if let Some(d) = k.duration_ms {
        m.insert("duration".into(), json!(d));
    }
    m.insert("actor".into(), actor(&c.process, &c.session));
    unmapped(
        &mut m,
        json!({ "type": if open { "connection_open" } else { "connection_close" }, "reader": c.reader,
                "host_source": k.host_source, "error": k.error, "fingerprint": c.fingerprint }),
    );
    m
}

fn finding(r: &Record, f: &FindingRecord) -> Map<String, Value> {
    let mut m = base(r, &FINDING, 1, "Create", f.finding.severity.ocsf_id());
    // A signature's finding is named by the signature's id; the rest by their rule.
    let (name, analytic_type) = match &f.finding.signature {
        Some(id) => (id.as_str(), json!({ "type_id": 3, "type": "Fingerprint" })),
        None => (f.finding.rule.as_str(), json!({ "type_id": 1, "type": "Rule" })),
    };
    let mut analytic = json!({ "name": name, "uid": name });
    if let (Some(a), Some(t)) = (analytic.as_object_mut(), analytic_type.as_object()) {
        a.extend(t.clone());
    }
    // The prompt-marker rule is about what a request carries, not what the session read.
    let prompt = f.finding.rule == crate::detect::prompt_rule::RULE;
    let kind = if prompt { "Covert Prompt Content" } else { "Host Fingerprinting" };
    m.insert(
        "finding_info".into(),
        json!({ "uid": f.id, "title": name, "desc": f.finding.description,
                "types": [kind, f.finding.rule], "analytic": analytic }),
    );
    let mut evidences: Vec<Value> = f
        .finding
        .evidence
        .iter()
        .map(|e| json!({ "process": { "pid": e.signal.pid }, "data": { "kind": e.signal.kind, "category": e.signal.category,
                          "artifact": e.signal.artifact, "reader": e.signal.reader, "ms_before_egress": e.ms_before_egress } }))
        .collect();
    evidences.extend(f.finding.new_markers.iter().map(|n| json!({ "data": n })));
    evidences.extend(f.finding.date_changes.iter().map(|d| json!({ "data": d })));
    evidences.push(json!({ "dst_endpoint": { "hostname": f.destination.host, "ip": f.destination.addr, "port": f.destination.port } }));
    m.insert("evidences".into(), Value::Array(evidences));
    m.insert("actor".into(), actor(&f.process, &f.session));
    m.insert("status_id".into(), json!(1));
    m.insert("status".into(), json!("New"));
    unmapped(
        &mut m,
        json!({ "type": "finding", "reader": f.reader, "destination_class": f.finding.destination_class,
                "groups": f.finding.groups, "categories": f.finding.categories, "connection_id": f.connection_id,
                "evasion": f.finding.evasion, "rule": f.finding.rule, "signature": f.finding.signature,
                "assistant_version": f.finding.assistant_version, "new_categories": f.finding.new_categories,
                "new_markers": f.finding.new_markers, "date_changes": f.finding.date_changes,
                "by_assistant": f.finding.by_assistant }),
    );
    m
}
