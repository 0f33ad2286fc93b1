//! Renders cross-check results: one round ([`Report`]) or a window of
//! history ([`WindowSummary`]) as text (a terminal table), JSON (the stable
//! interface), Markdown (for a change ticket), HTML (one self-contained
//! file) or JUnit XML (each metric/source a test case, for CI); and shapes
//! the daemon's status page ([`status`]).

pub mod html;
pub mod status;

use std::fmt::Write as _;

use crate::crosscheck::{Entry, Report, Verdict};
use crate::store::WindowSummary;
use crate::table::render as table;

/// Output format of `lookout report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a terminal.
    Text,
    /// The stable JSON interface.
    Json,
    /// A Markdown table.
    Markdown,
    /// One self-contained HTML file.
    Html,
    /// JUnit XML.
    Junit,
}

/// What is being reported.
pub enum Doc<'a> {
    /// One round, with the reference's name.
    Round(&'a Report),
    /// A window of history.
    Window(&'a WindowSummary),
}

/// Renders `doc` in `format`.
pub fn render(doc: &Doc<'_>, format: Format) -> String {
    match (doc, format) {
        (Doc::Round(r), Format::Text) => round_text(r),
        (Doc::Round(r), Format::Json) => json(r),
        (Doc::Round(r), Format::Markdown) => round_markdown(r),
        (Doc::Round(r), Format::Html) => html::report_page(r),
        (Doc::Round(r), Format::Junit) => round_junit(r),
        (Doc::Window(w), Format::Text) => window_text(w),
        (Doc::Window(w), Format::Json) => window_json(w),
        (Doc::Window(w), Format::Markdown) => window_markdown(w),
        (Doc::Window(w), Format::Html) => html::window_page(w),
        (Doc::Window(w), Format::Junit) => window_junit(w),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn window_json(w: &WindowSummary) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        verdict: &'static str,
        #[serde(flatten)]
        summary: &'a WindowSummary,
    }
    json(&Out {
        verdict: w.verdict().as_str(),
        summary: w,
    })
}

/// A number for a person: integers without decimals, small values in
/// scientific notation.
pub fn num(v: Option<f64>) -> String {
    v.map(crate::crosscheck::fmt_num).unwrap_or_else(|| "—".into())
}

/// A Unix time as RFC 3339 (UTC, seconds).
pub fn time(t: f64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0))).to_string()
}

fn summary_line(r: &Report) -> String {
    let mut counts = Vec::new();
    for v in Verdict::ALL {
        let n = r.count(v);
        if n > 0 {
            counts.push(format!("{n} {v}"));
        }
    }
    format!(
        "Cross-check {} at {} (reference: {}): {}",
        r.verdict.as_str().to_uppercase(),
        time(r.timestamp),
        r.reference,
        counts.join(", ")
    )
}

fn entry_row(e: &Entry) -> Vec<String> {
    vec![
        e.metric.clone(),
        e.source.clone(),
        if e.verdict == Verdict::Disagree {
            "DISAGREE".into()
        } else {
            e.verdict.to_string()
        },
        num(e.value),
        num(e.reference_value),
        num(e.deviation),
        e.bound.clone().unwrap_or_default(),
        e.reason.clone(),
    ]
}

const ENTRY_HEAD: [&str; 8] = ["METRIC", "SOURCE", "VERDICT", "VALUE", "REFERENCE", "DEVIATION", "BOUND", "REASON"];

fn round_text(r: &Report) -> String {
    let mut out = summary_line(r);
    out.push_str("\n\n");
    let rows: Vec<Vec<String>> = r.entries.iter().map(entry_row).collect();
    out.push_str(&table(&ENTRY_HEAD, &rows));
    if !r.dashboard.is_empty() {
        out.push_str("\nDashboard hit rate (rate() over 5m, judged apart from the lifetime ratio):\n");
        out.push_str(&table(&ENTRY_HEAD, &r.dashboard.iter().map(entry_row).collect::<Vec<_>>()));
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn round_markdown(r: &Report) -> String {
    let mut out = format!("## {}\n\n", md_escape(&summary_line(r)));
    out.push_str("| Metric | Source | Verdict | Value | Reference | Deviation | Bound | Reason |\n|---|---|---|---:|---:|---:|---|---|\n");
    for e in r.entries.iter().chain(&r.dashboard) {
        let v = if e.verdict == Verdict::Disagree {
            "**disagree**".to_string()
        } else {
            e.verdict.to_string()
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {v} | {} | {} | {} | {} | {} |",
            e.metric,
            md_escape(&e.source),
            num(e.value),
            num(e.reference_value),
            num(e.deviation),
            md_escape(e.bound.as_deref().unwrap_or("")),
            md_escape(&e.reason)
        );
    }
    out
}

/// Escapes text for XML and HTML.
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

fn round_junit(r: &Report) -> String {
    let failures = r.count(Verdict::Disagree);
    let skipped = r.entries.len() - failures - r.count(Verdict::Agree);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"lookout\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n  <testsuite name=\"crosscheck\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" timestamp=\"{}\">",
        r.entries.len(),
        r.entries.len(),
        time(r.timestamp)
    );
    for e in &r.entries {
        let _ = write!(out, "    <testcase classname=\"{}\" name=\"{}\"", xml(&e.source), xml(&e.metric));
        match e.verdict {
            Verdict::Agree => out.push_str("/>\n"),
            Verdict::Disagree => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"disagree\">value {} reference {} deviation {} bound {}</failure>\n    </testcase>",
                    xml(&e.reason),
                    num(e.value),
                    num(e.reference_value),
                    num(e.deviation),
                    xml(e.bound.as_deref().unwrap_or(""))
                );
            }
            v => {
                let _ = writeln!(out, ">\n      <skipped message=\"{}: {}\"/>\n    </testcase>", v, xml(&e.reason));
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.2}%", r * 100.0)).unwrap_or_else(|| "—".into())
}

fn window_text(w: &WindowSummary) -> String {
    let mut out = format!(
        "Cross-check {} from {} to {}: {} rounds ({})\n\n",
        w.verdict().as_str().to_uppercase(),
        time(w.since),
        time(w.until),
        w.rounds,
        w.round_verdicts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows: Vec<Vec<String>> = w
        .pairs
        .iter()
        .map(|p| {
            vec![
                p.metric.clone(),
                p.source.clone(),
                pct(p.agreement_ratio),
                format!("{}/{}", p.agree, p.rounds),
                p.disagree.to_string(),
                num(p.worst_deviation),
                match (p.first_disagree, p.last_disagree) {
                    (Some(a), Some(b)) if a != b => format!("{} … {}", time(a), time(b)),
                    (Some(a), _) => time(a),
                    _ => String::new(),
                },
                p.last_disagree_reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "METRIC",
            "SOURCE",
            "AGREEMENT",
            "AGREE/ROUNDS",
            "DISAGREE",
            "WORST DEVIATION",
            "DISAGREED",
            "WHY (LAST)",
        ],
        &rows,
    ));
    out.push_str("\nAvailability:\n");
    let rows: Vec<Vec<String>> = w
        .availability
        .iter()
        .map(|a| vec![a.probe.clone(), pct(a.ratio), format!("{}/{}", a.ok, a.runs)])
        .collect();
    out.push_str(&table(&["PROBE", "AVAILABILITY", "OK/RUNS"], &rows));
    out
}

fn window_markdown(w: &WindowSummary) -> String {
    let mut out = format!(
        "## Cross-check {} from {} to {} ({} rounds)\n\n",
        w.verdict().as_str(),
        time(w.since),
        time(w.until),
        w.rounds
    );
    out.push_str("| Metric | Source | Agreement | Agree/rounds | Disagree | Worst deviation | Last disagreement | Why |\n|---|---|---:|---:|---:|---:|---|---|\n");
    for p in &w.pairs {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {}/{} | {} | {} | {} | {} |",
            p.metric,
            md_escape(&p.source),
            pct(p.agreement_ratio),
            p.agree,
            p.rounds,
            p.disagree,
            num(p.worst_deviation),
            p.last_disagree.map(time).unwrap_or_default(),
            md_escape(p.last_disagree_reason.as_deref().unwrap_or_default())
        );
    }
    out.push_str("\n| Probe | Availability | OK/runs |\n|---|---:|---:|\n");
    for a in &w.availability {
        let _ = writeln!(out, "| {} | {} | {}/{} |", md_escape(&a.probe), pct(a.ratio), a.ok, a.runs);
    }
    out
}

fn window_junit(w: &WindowSummary) -> String {
    let failures = w.pairs.iter().filter(|p| p.disagree > 0).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"lookout\" tests=\"{0}\" failures=\"{failures}\">\n  <testsuite name=\"crosscheck-window\" tests=\"{0}\" failures=\"{failures}\" timestamp=\"{1}\">",
        w.pairs.len(),
        time(w.since)
    );
    for p in &w.pairs {
        let _ = write!(out, "    <testcase classname=\"{}\" name=\"{}\"", xml(&p.source), xml(&p.metric));
        if p.disagree > 0 {
            let _ = writeln!(
                out,
                ">\n      <failure message=\"disagreed in {} of {} rounds\" type=\"disagree\">worst deviation {}; last: {}</failure>\n    </testcase>",
                p.disagree,
                p.rounds,
                num(p.worst_deviation),
                xml(p.last_disagree_reason.as_deref().unwrap_or_default())
            );
        } else {
            out.push_str("/>\n");
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
