//! Requests as fields (`header.x`, `query.y`, `body.a[0].b`, JSON in strings expanded),
//! matched across runs, compared field by field.

use super::*;

// ---------- requests ----------

/// Headers that follow from how the request was carried (host, proxy, length), not from what
/// the assistant chose to say.
pub(super) const TRANSPORT_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "keep-alive",
    "te",
    "upgrade",
];

/// A request as fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Flat {
    /// `POST /v1/messages`: what requests are matched by across runs (ids in the path masked).
    pub key: String,
    pub fields: BTreeMap<String, String>,
    pub llm_call: bool,
}

pub(super) fn id_like(seg: &str) -> bool {
    let digits = seg.chars().filter(char::is_ascii_digit).count();
    let alnum = seg.chars().filter(char::is_ascii_alphanumeric).count();
    // Lower-case words between separators are a name (`gemini-3.5-flash`), not an id.
    let wordy = seg.contains(['-', '.']) && !seg.chars().any(|c| c.is_ascii_uppercase());
    (digits >= 4 && digits == seg.len())
        || (seg.len() >= 16 && digits > 0 && !wordy && alnum * 10 >= seg.len() * 7)
        || (seg.len() >= 8 && digits > 0 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

pub(super) fn path_key(path: &str) -> String {
    let route = path.split('?').next().unwrap_or(path);
    route
        .split('/')
        .map(|seg| {
            let (head, verb) = seg.split_once(':').map_or((seg, None), |(h, v)| (h, Some(v)));
            let head = if id_like(head) { "{id}" } else { head };
            match verb {
                Some(v) => format!("{head}:{v}"),
                None => head.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn flatten_json(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
    depth: usize,
) {
    use serde_json::Value;
    match v {
        Value::Object(m) if !m.is_empty() && depth < 64 => {
            for (k, x) in m {
                flatten_json(&format!("{prefix}.{k}"), x, out, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && depth < 64 => {
            for (i, x) in a.iter().enumerate() {
                flatten_json(&format!("{prefix}[{i}]"), x, out, depth + 1);
            }
        }
        Value::String(s) => {
            let t = s.trim_start();
            if (t.starts_with('{') || t.starts_with('[')) && depth < 64 {
                if let Ok(inner @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(s) {
                    flatten_json(&format!("{prefix}⟨json⟩"), &inner, out, depth + 1);
                    return;
                }
            }
            // Telemetry often carries JSON in base64 (Claude Code's event_data.process): compared
            // as one opaque string, its volatile numbers and ids could not be told from news.
            if let Some(inner) = base64_json(s).filter(|_| depth < 64) {
                flatten_json(&format!("{prefix}⟨base64 json⟩"), &inner, out, depth + 1);
                return;
            }
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `s` decoded as base64 (standard or URL-safe, padded or not) if that gives a JSON object or
/// array.
pub(super) fn base64_json(s: &str) -> Option<serde_json::Value> {
    let t = s.trim_end_matches('=');
    if t.len() < 16 || !(t.starts_with("ey") || t.starts_with('W')) {
        return None;
    }
    let mut bytes = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in t.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes).ok()? {
        v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)) => Some(v),
        _ => None,
    }
}

pub fn flatten(r: &Recorded) -> Flat {
    let mut fields = BTreeMap::new();
    let (route, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
    fields.insert("path".to_string(), route.to_string());
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let e = fields.entry(format!("query.{k}")).or_insert_with(String::new);
        if !e.is_empty() {
            e.push('&');
        }
        e.push_str(v);
    }
    for (k, v) in &r.headers {
        if TRANSPORT_HEADERS.contains(&k.as_str()) {
            continue;
        }
        let e = fields.entry(format!("header.{k}")).or_insert_with(String::new);
        if !e.is_empty() {
            e.push_str(", ");
        }
        e.push_str(v);
    }
    if r.binary {
        fields.insert("body".into(), format!("<{} bytes, not text>", r.body_bytes));
    } else if !r.body.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&r.body) {
            Ok(v) => flatten_json("body", &v, &mut fields, 0),
            Err(_) => {
                fields.insert("body".into(), r.body.clone());
            }
        }
    }
    Flat { key: format!("{} {}", r.method, path_key(&r.path)), fields, llm_call: r.llm_call }
}

/// How a request differs between the baseline and a variant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestDiff {
    /// `POST /v1/messages #1` (the first request with that method and path).
    pub request: String,
    pub llm_call: bool,
    /// Sent under the variant more often than in any baseline run (`extra`), or less often than
    /// in every one (`missing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
}

impl RequestDiff {
    /// Counts as a finding: a changed field, or a request no baseline run sent.
    pub fn is_finding(&self) -> bool {
        !self.fields.is_empty() || self.presence.as_deref().is_some_and(|p| p.starts_with("extra"))
    }
}

pub(super) fn by_key(reqs: &[Flat]) -> BTreeMap<&str, Vec<&Flat>> {
    let mut m: BTreeMap<&str, Vec<&Flat>> = BTreeMap::new();
    for r in reqs {
        m.entry(r.key.as_str()).or_default().push(r);
    }
    m
}

/// A request sent only under the variant: what it carries is all new; a disclosure if it
/// carries the variant's value.
fn added_request(v: &Flat, tokens: &[String]) -> Vec<FieldDiff> {
    let disclosed: Vec<String> =
        tokens.iter().filter(|t| v.fields.values().any(|f| contains_token(f, t))).cloned().collect();
    if disclosed.is_empty() {
        return Vec::new();
    }
    vec![FieldDiff {
        field: "(request)".into(),
        change: "added",
        kinds: [Kind::Disclosure].into_iter().collect(),
        disclosed,
        hunks: Vec::new(),
        baseline: None,
        variant: None,
    }]
}

/// Every difference between a variant's requests and the baseline runs'.
pub fn compare_run(
    baselines: &[Vec<Flat>],
    variant: &[Flat],
    tokens: &[String],
    window: DayWindow,
) -> Vec<RequestDiff> {
    let bmaps: Vec<BTreeMap<&str, Vec<&Flat>>> = baselines.iter().map(|b| by_key(b)).collect();
    let vmap = by_key(variant);
    let keys: BTreeSet<&str> =
        bmaps.iter().flat_map(|m| m.keys().copied()).chain(vmap.keys().copied()).collect();
    // Keep the variant's order of first appearance, then the rest.
    let mut ordered: Vec<&str> = Vec::new();
    for r in variant.iter().chain(baselines.first().map(Vec::as_slice).unwrap_or(&[])) {
        if keys.contains(r.key.as_str()) && !ordered.contains(&r.key.as_str()) {
            ordered.push(r.key.as_str());
        }
    }
    for k in &keys {
        if !ordered.contains(k) {
            ordered.push(k);
        }
    }
    let mut out = Vec::new();
    for key in ordered {
        let counts: Vec<usize> = bmaps.iter().map(|m| m.get(key).map_or(0, Vec::len)).collect();
        let (lo, hi) = (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0));
        let vs = vmap.get(key).cloned().unwrap_or_default();
        let llm = vs.first().map(|f| f.llm_call).unwrap_or_else(|| {
            bmaps.iter().find_map(|m| m.get(key).and_then(|v| v.first()).map(|f| f.llm_call)).unwrap_or(false)
        });
        if lo != hi {
            // How often it is sent is noise (telemetry batches): each of the variant's is
            // compared with all the baseline's, field positions loose.
            out.extend(compare_pooled(&bmaps, key, &vs, llm, hi, tokens, window));
            continue;
        }
        for (k, v) in vs.iter().enumerate().take(lo) {
            let bs: Vec<&Flat> = bmaps.iter().map(|m| m[key][k]).collect();
            let fields = compare_fields(&bs, v, tokens, window);
            if !fields.is_empty() {
                out.push(RequestDiff {
                    request: format!("{key} #{}", k + 1),
                    llm_call: llm,
                    presence: None,
                    fields,
                });
            }
        }
        if vs.len() > hi {
            for (k, v) in vs.iter().enumerate().skip(hi) {
                out.push(RequestDiff {
                    request: format!("{key} #{}", k + 1),
                    llm_call: llm,
                    presence: Some(format!(
                        "extra: sent {} time(s), at most {hi} in the baseline runs",
                        vs.len()
                    )),
                    fields: added_request(v, tokens),
                });
            }
        } else if vs.len() < lo {
            out.push(RequestDiff {
                request: format!("{key} #{}", vs.len() + 1),
                llm_call: llm,
                presence: Some(format!(
                    "missing: sent {} time(s), at least {lo} in every baseline run",
                    vs.len()
                )),
                fields: Vec::new(),
            });
        }
    }
    out
}

/// The variant's requests `vs` of `key`, which the baseline runs sent a varying number of times,
/// each compared with all the baseline runs' requests of that key, field positions loose.
#[allow(clippy::too_many_arguments)]
fn compare_pooled(
    bmaps: &[BTreeMap<&str, Vec<&Flat>>],
    key: &str,
    vs: &[&Flat],
    llm: bool,
    hi: usize,
    tokens: &[String],
    window: DayWindow,
) -> Vec<RequestDiff> {
    let pool: Vec<&Flat> = bmaps.iter().filter_map(|m| m.get(key)).flatten().copied().collect();
    let mut out = Vec::new();
    for (k, v) in vs.iter().enumerate() {
        let paths: BTreeSet<String> = pool
            .iter()
            .copied()
            .chain([*v])
            .flat_map(|f| f.fields.keys())
            .map(|n| loose::masked(n))
            .collect();
        // A path not in every request of the pool is optional: its absence is no finding.
        let fields: Vec<FieldDiff> = loose::compare_loose(&pool, v, &paths, tokens, window)
            .into_iter()
            .filter(|d| d.change != "removed")
            .collect();
        if !fields.is_empty() {
            let presence = (k >= hi)
                .then(|| format!("extra: sent {} time(s), at most {hi} in the baseline runs", vs.len()));
            out.push(RequestDiff { request: format!("{key} #{}", k + 1), llm_call: llm, presence, fields });
        }
    }
    out
}

pub(super) fn compare_fields(bs: &[&Flat], v: &Flat, tokens: &[String], window: DayWindow) -> Vec<FieldDiff> {
    let unstable = loose::unstable(bs, v);
    let names: BTreeSet<&String> = bs
        .iter()
        .flat_map(|b| b.fields.keys())
        .chain(v.fields.keys())
        .filter(|n| !unstable.contains(&loose::masked(n)))
        .collect();
    let mut out = loose::compare_loose(bs, v, &unstable, tokens, window);
    for name in names {
        let in_b: Vec<&str> = bs.iter().filter_map(|b| b.fields.get(name).map(String::as_str)).collect();
        let in_v = v.fields.get(name);
        match (in_b.len() == bs.len(), in_b.is_empty(), in_v) {
            (true, _, Some(x)) => {
                if let Some(d) = compare_text(name, &in_b, x, tokens, window) {
                    out.push(d);
                }
            }
            (true, _, None) => out.push(FieldDiff {
                field: name.clone(),
                change: "removed",
                kinds: [Kind::Content].into_iter().collect(),
                disclosed: Vec::new(),
                hunks: Vec::new(),
                baseline: Some(cut(in_b[0], 300)),
                variant: None,
            }),
            (false, true, Some(x)) => {
                let disclosed: Vec<String> =
                    tokens.iter().filter(|t| contains_token(x, t)).cloned().collect();
                let mut kinds: BTreeSet<Kind> = [Kind::Content].into_iter().collect();
                if !disclosed.is_empty() {
                    kinds = [Kind::Disclosure].into_iter().collect();
                }
                out.push(FieldDiff {
                    field: name.clone(),
                    change: "added",
                    kinds,
                    disclosed,
                    hunks: Vec::new(),
                    baseline: None,
                    variant: Some(cut(x, 300)),
                });
            }
            // In some baseline runs only: its presence is noise.
            _ => {}
        }
        if out.len() >= 50 {
            break;
        }
    }
    out
}
