//! bench/overhead.svg: the added cost per operation of each condition, as bars on a log scale.

use super::overhead::{Overhead, CONDITIONS, WORKLOADS};

const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
const TICKS: [&str; 7] = ["1 ns", "10", "100", "1 µs", "10", "100", "1 ms"];

/// A bar chart of the added cost per operation (log scale, 1 ns to 1 ms), as SVG. A negative
/// difference is noise: drawn as no added cost.
pub fn svg(o: &Overhead) -> String {
    let (w, row_h, left) = (900.0, 26.0 * CONDITIONS.len() as f64 + 14.0, 150.0);
    let h = 40.0 + WORKLOADS.len() as f64 * row_h + 40.0;
    let scale = |ns: f64| ((ns.max(1.0)).log10() / 6.0) * (w - left - 20.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    svg +=
        r#"<text x="10" y="18" font-size="13">Added cost per operation vs. no sensor (ns, log scale)</text>"#;
    for (i, (name, _)) in WORKLOADS.iter().enumerate() {
        let y0 = 30.0 + i as f64 * row_h;
        svg += &format!(r#"<text x="10" y="{}">{name}</text>"#, y0 + row_h / 2.0);
        for (j, cond) in CONDITIONS.iter().enumerate() {
            let ns = o.added(cond, name);
            let y = y0 + j as f64 * 26.0;
            let len = if ns.is_finite() { scale(ns.max(0.0)) } else { 0.0 };
            svg += &format!(
                r#"<rect x="{left}" y="{y}" width="{len:.1}" height="20" fill="{}"/>"#,
                COLORS[j % 4]
            );
            let label = if ns.is_finite() {
                format!("{cond}: {:.0} ns", ns.max(0.0))
            } else {
                format!("{cond}: n/a")
            };
            svg += &format!(r#"<text x="{:.1}" y="{}">{label}</text>"#, left + len + 4.0, y + 14.0);
        }
    }
    for (k, t) in TICKS.iter().enumerate() {
        let x = left + k as f64 / 6.0 * (w - left - 20.0);
        svg += &format!(
            r##"<line x1="{x}" y1="28" x2="{x}" y2="{}" stroke="#ccc"/><text x="{x}" y="{}">{t}</text>"##,
            h - 30.0,
            h - 15.0
        );
    }
    svg + "</svg>\n"
}
