//! HTML: the report as one self-contained file and the daemon's status page.
//! No script, no external asset, no CDN: inline CSS and inline SVG only, so
//! the page works offline and from a file attached to a ticket.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::status::{Series, Status};
use super::{num, time, xml};
use crate::crosscheck::{Entry, Overall, Report, Verdict};
use crate::metric::Metric;
use crate::store::WindowSummary;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem;color:#1d2433;background:#f7f8fa}\
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
.muted{color:#5b6475}table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001}\
th,td{padding:.35rem .7rem;border-bottom:1px solid #e3e6ec;text-align:left;vertical-align:top;font-size:.9rem}\
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.v{display:inline-block;padding:.1rem .45rem;border-radius:.25rem;font-weight:600;font-size:.8rem;color:#fff}\
.agree{background:#1e7b34}.disagree{background:#c62828}.stale{background:#b26a00}.missing{background:#7a7f8a}\
.reset{background:#1f5fa8}.source_down{background:#6a1b9a}.incomplete{background:#b26a00}.ok{background:#1e7b34}.failing{background:#c62828}.pending{background:#7a7f8a}\
.matrix td{text-align:center}.matrix td.m{text-align:left;font-family:ui-monospace,monospace}\
.banner{padding:.8rem 1rem;border-radius:.4rem;color:#fff;font-size:1.1rem;font-weight:600;margin:.6rem 0 1rem}\
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{background:#fff;padding:.6rem;box-shadow:0 1px 2px #0001;max-width:360px}\
.chart h3{font-size:.9rem;margin:0 0 .3rem}.legend span{margin-right:.8rem;font-size:.8rem}code{font-size:.85rem}";

fn page(title: &str, body: &str, refresh: Option<u32>) -> String {
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{refresh}<title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        xml(title)
    )
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"v {class}\">{}</span>", xml(text))
}

fn banner(v: Overall, text: &str) -> String {
    format!(
        "<div class=\"banner {}\" id=\"verdict\" data-verdict=\"{}\">{}</div>",
        v.as_str(),
        v.as_str(),
        xml(text)
    )
}

/// The cross-check matrix: metrics down, sources across, cells coloured by
/// verdict, the reason in the tooltip.
pub fn matrix(r: &Report) -> String {
    let mut sources: Vec<&str> = Vec::new();
    for e in &r.entries {
        if !sources.contains(&e.source.as_str()) {
            sources.push(&e.source);
        }
    }
    let cell: BTreeMap<(&str, &str), &Entry> = r.entries.iter().map(|e| ((e.metric.as_str(), e.source.as_str()), e)).collect();
    let mut out = String::from("<table class=\"matrix\" id=\"matrix\"><thead><tr><th>metric \\ source</th>");
    for s in &sources {
        let _ = write!(out, "<th>{}</th>", xml(s));
    }
    out.push_str("</tr></thead><tbody>");
    for m in Metric::ALL {
        let _ = write!(out, "<tr><td class=\"m\">{}</td>", m.as_str());
        for s in &sources {
            match cell.get(&(m.as_str(), *s)) {
                Some(e) => {
                    let title = format!(
                        "{}: value {}, reference {}, bound {} — {}",
                        e.verdict,
                        num(e.value),
                        num(e.reference_value),
                        e.bound.as_deref().unwrap_or("—"),
                        e.reason
                    );
                    let _ = write!(
                        out,
                        "<td data-metric=\"{}\" data-source=\"{}\" data-verdict=\"{}\" title=\"{}\">{}</td>",
                        m.as_str(),
                        xml(s),
                        e.verdict,
                        xml(&title),
                        badge(e.verdict.as_str(), e.verdict.as_str())
                    );
                }
                None => out.push_str("<td>—</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn entries_table(entries: &[Entry]) -> String {
    let mut out = String::from(
        "<table id=\"entries\"><thead><tr><th>Metric</th><th>Source</th><th>Verdict</th><th>Value</th><th>Reference</th><th>Deviation</th><th>Bound</th><th>Reason</th></tr></thead><tbody>",
    );
    for e in entries {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            xml(&e.metric),
            xml(&e.source),
            badge(e.verdict.as_str(), e.verdict.as_str()),
            num(e.value),
            num(e.reference_value),
            num(e.deviation),
            xml(e.bound.as_deref().unwrap_or("")),
            xml(&e.reason)
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn round_body(r: &Report) -> String {
    let mut body = String::new();
    let counts: Vec<String> = Verdict::ALL
        .iter()
        .filter(|v| r.count(**v) > 0)
        .map(|v| format!("{} {v}", r.count(*v)))
        .collect();
    body.push_str(&banner(
        r.verdict,
        &format!("Sources {}: {}", r.verdict.as_str(), counts.join(", ")),
    ));
    let _ = write!(
        body,
        "<p class=\"muted\">Round at {} · reference <code>{}</code></p>",
        time(r.timestamp),
        xml(&r.reference)
    );
    body.push_str("<h2>Matrix</h2>");
    body.push_str(&matrix(r));
    body.push_str("<h2>Details</h2>");
    body.push_str(&entries_table(&r.entries));
    if !r.dashboard.is_empty() {
        body.push_str("<h2>Dashboard hit rate (rate() over 5m)</h2>");
        body.push_str(&entries_table(&r.dashboard));
    }
    body
}

/// A round as one self-contained HTML page.
pub fn report_page(r: &Report) -> String {
    page(
        "lookout cross-check",
        &format!("<h1>lookout cross-check</h1>{}", round_body(r)),
        None,
    )
}

/// A window summary as one self-contained HTML page.
pub fn window_page(w: &WindowSummary) -> String {
    let mut body = String::from("<h1>lookout cross-check over a window</h1>");
    body.push_str(&banner(
        w.verdict(),
        &format!(
            "{} from {} to {} · {} rounds",
            w.verdict().as_str(),
            time(w.since),
            time(w.until),
            w.rounds
        ),
    ));
    body.push_str("<h2>Agreement</h2><table><thead><tr><th>Metric</th><th>Source</th><th>Agreement</th><th>Agree/rounds</th><th>Disagree</th><th>Worst deviation</th><th>Last disagreement</th><th>Why</th></tr></thead><tbody>");
    for p in &w.pairs {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}/{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            xml(&p.metric),
            xml(&p.source),
            p.agreement_ratio
                .map(|r| format!("{:.2}%", r * 100.0))
                .unwrap_or_else(|| "—".into()),
            p.agree,
            p.rounds,
            p.disagree,
            num(p.worst_deviation),
            p.last_disagree.map(time).unwrap_or_default(),
            xml(p.last_disagree_reason.as_deref().unwrap_or_default())
        );
    }
    body.push_str(
        "</tbody></table><h2>Availability</h2><table><thead><tr><th>Probe</th><th>Availability</th><th>OK/runs</th></tr></thead><tbody>",
    );
    for a in &w.availability {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}/{}</td></tr>",
            xml(&a.probe),
            a.ratio.map(|r| format!("{:.3}%", r * 100.0)).unwrap_or_else(|| "—".into()),
            a.ok,
            a.runs
        );
    }
    body.push_str("</tbody></table>");
    page("lookout cross-check window", &body, None)
}

const PALETTE: [&str; 6] = ["#1f5fa8", "#c62828", "#1e7b34", "#b26a00", "#6a1b9a", "#00838f"];

/// A small inline SVG line chart.
pub fn svg_chart(id: &str, title: &str, unit: &str, series: &[Series], since: f64, until: f64) -> String {
    let (w, h, pad_l, pad_b) = (340.0, 120.0, 46.0, 16.0);
    let vals = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite());
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    if (hi - lo).abs() < 1e-12 {
        hi = lo + lo.abs().max(1.0) * 0.1;
        lo -= (hi - lo) * 0.5;
    }
    let span = (until - since).max(1.0);
    let x = |t: f64| pad_l + (t - since) / span * (w - pad_l - 4.0);
    let y = |v: f64| 4.0 + (hi - v) / (hi - lo) * (h - pad_b - 8.0);
    let mut out = format!("<div class=\"chart\" id=\"{}\"><h3>{}</h3>", xml(id), xml(title));
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        xml(title)
    );
    let _ = write!(
        out,
        "<rect x=\"{pad_l}\" y=\"4\" width=\"{}\" height=\"{}\" fill=\"#fafbfc\" stroke=\"#e3e6ec\"/>",
        w - pad_l - 4.0,
        h - pad_b - 8.0
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"12\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6475\">{}</text>",
        pad_l - 3.0,
        xml(&axis(hi, unit))
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6475\">{}</text>",
        pad_l - 3.0,
        h - pad_b - 4.0,
        xml(&axis(lo, unit))
    );
    let _ = write!(
        out,
        "<text x=\"{pad_l}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\">{}</text>",
        h - 3.0,
        xml(&hhmm(since))
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6475\">{}</text>",
        w - 4.0,
        h - 3.0,
        xml(&hhmm(until))
    );
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            xml(&s.name),
            PALETTE[i % PALETTE.len()],
            pts.join(" ")
        );
    }
    out.push_str("</svg><div class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        let _ = write!(
            out,
            "<span style=\"color:{}\">■ {}</span>",
            PALETTE[i % PALETTE.len()],
            xml(&s.name)
        );
    }
    out.push_str("</div></div>");
    out
}

fn hhmm(t: f64) -> String {
    let s = time(t);
    s.get(11..16).map(|x| format!("{x} UTC")).unwrap_or(s)
}

fn axis(v: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{:.2} ms", v * 1000.0),
        "MiB" => format!("{:.1} MiB", v / 1048576.0),
        "" => {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        }
        u => format!("{v:.2} {u}"),
    }
}

/// One table per topology probe (`redis_sentinel`, `redis_cluster`): its
/// nodes with their roles, and the last master change with its time.
fn topologies(s: &Status<'_>) -> String {
    let mut out = String::new();
    for p in &s.probes {
        let Some(t) = p.last.and_then(|o| o.facts.topology.as_deref()) else {
            continue;
        };
        let summary = match &t.cluster {
            Some(c) => format!(
                "cluster_state {}, {} of 16384 slots served",
                if c.state_ok { "ok" } else { "fail" },
                c.slots_ok
            ),
            None => format!("master <code>{}</code>", xml(t.master.as_deref().unwrap_or("unknown"))),
        };
        let _ = write!(out, "<h2>Topology <span class=\"muted\">({}, {summary})</span></h2>", xml(p.name));
        match &t.last_failover {
            Some(f) => {
                let _ = write!(
                    out,
                    "<p class=\"failover\" data-probe=\"{}\">Last failover: <code>{}</code> → <code>{}</code> at {}</p>",
                    xml(p.name),
                    xml(&f.from),
                    xml(&f.to),
                    time(f.at)
                );
            }
            None => out.push_str("<p class=\"muted\">No failover seen since lookout started.</p>"),
        }
        out.push_str("<table class=\"topology\"><thead><tr><th>Node</th><th>Role</th><th>State</th><th>Link</th><th>Lag</th><th>Flags</th></tr></thead><tbody>");
        for n in &t.nodes {
            let state = if n.ok { "ok" } else { "failing" };
            let link = n.link_up.map(|u| if u { "up" } else { "down" }).unwrap_or("");
            let lag = match (n.lag_bytes, n.lag_seconds) {
                (Some(b), Some(sec)) => format!("{b:.0} B, {sec:.0} s"),
                (Some(b), None) => format!("{b:.0} B"),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "<tr data-node=\"{}\" data-role=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                xml(&n.address),
                xml(&n.role),
                xml(&n.address),
                xml(&n.role),
                badge(state, state),
                link,
                xml(&lag),
                xml(&n.flags.join(", ")),
            );
        }
        out.push_str("</tbody></table>");
    }
    out
}

/// The status page at `/`.
pub fn status_page(s: &Status<'_>) -> String {
    let mut body = String::from("<h1>lookout</h1>");
    let failing = s.probes.iter().filter(|p| p.last.is_some_and(|o| !o.ok)).count();
    let overall = match (failing, s.report.map(|r| r.verdict)) {
        (0, Some(Overall::Agree)) => (Overall::Agree, "All probes up · all sources agree".to_string()),
        (0, None) => (Overall::Agree, "All probes up".to_string()),
        (0, Some(v)) => (v, format!("All probes up · sources {}", v.as_str())),
        (n, _) => (Overall::Disagree, format!("{n} probe{} failing", if n == 1 { "" } else { "s" })),
    };
    body.push_str(&banner(overall.0, &overall.1));
    let _ = write!(
        body,
        "<p class=\"muted\">{} probes · version {}{} · updated {} · refreshes every 15 s</p>",
        s.probes.len(),
        xml(s.version),
        match &s.replica {
            None => String::new(),
            Some((me, Some(leader))) if me == leader => format!(" · replica {} (leads)", xml(me)),
            Some((me, Some(leader))) => format!(" · replica {} · leader {}", xml(me), xml(leader)),
            Some((me, None)) => format!(" · replica {} · leader unknown", xml(me)),
        },
        time(s.until)
    );
    body.push_str("<h2>Probes</h2><table id=\"probes\"><thead><tr><th>Probe</th><th>Kind</th><th>Schedule</th><th>State</th><th>Last run</th><th>Duration</th><th>Error</th></tr></thead><tbody>");
    for p in &s.probes {
        let (state, when, dur, err) = match p.last {
            None => ("pending", String::new(), String::new(), String::new()),
            Some(o) => (
                if o.ok { "ok" } else { "failing" },
                time(o.timestamp),
                format!("{:.1} ms", o.duration_seconds * 1000.0),
                o.error.clone().unwrap_or_default(),
            ),
        };
        let _ = write!(
            body,
            "<tr data-probe=\"{}\" data-state=\"{state}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            xml(p.name),
            xml(p.name),
            xml(p.kind),
            xml(&p.schedule),
            badge(state, state),
            xml(&when),
            xml(&dur),
            xml(&err)
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&topologies(s));
    match s.report {
        Some(r) => {
            let _ = write!(
                body,
                "<h2>Cross-check <span class=\"muted\">(reference <code>{}</code>, {})</span></h2>",
                xml(&r.reference),
                time(r.timestamp)
            );
            body.push_str(&matrix(r));
            let problems: Vec<Entry> = r.entries.iter().filter(|e| e.verdict != Verdict::Agree).cloned().collect();
            if !problems.is_empty() {
                body.push_str("<h2>Not agreeing</h2>");
                body.push_str(&entries_table(&problems));
            }
        }
        None => body.push_str(
            "<h2>Cross-check</h2><p class=\"muted\">No round yet (or no reference `redis` probe with other sources to compare).</p>",
        ),
    }
    if !s.flushes.is_empty() {
        body.push_str("<h2>Redis flushes</h2><table id=\"flushes\"><thead><tr><th>Started</th><th>Probe</th><th>Pattern</th><th>State</th><th>Keys deleted</th><th>By</th><th>Id</th></tr></thead><tbody>");
        for f in &s.flushes {
            let _ = write!(
                body,
                "<tr data-flush=\"{}\" data-state=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}{}</td><td class=\"n\">{} of {}</td><td>{}</td><td><a href=\"/api/v1/redis/flushes/{}\">{}</a></td></tr>",
                xml(&f.id),
                xml(&f.state),
                time(f.started),
                xml(&f.probe),
                xml(&f.pattern),
                xml(&f.state),
                f.error
                    .as_deref()
                    .map(|e| format!("<br><span class=\"muted\">{}</span>", xml(e)))
                    .unwrap_or_default(),
                f.deleted,
                f.matched,
                xml(&f.user),
                xml(&f.id),
                xml(&f.id)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Last hours</h2><div class=\"charts\">");
    for c in &s.charts {
        let (title, unit) = match c.metric {
            Metric::HitRatio => ("Hit ratio (lifetime)", ""),
            Metric::LatencySeconds => ("Latency", "ms"),
            Metric::UsedMemoryBytes => ("Used memory", "MiB"),
            Metric::ConnectedClients => ("Connected clients", ""),
            m => (m.as_str(), ""),
        };
        body.push_str(&svg_chart(
            &format!("chart-{}", c.metric.as_str()),
            title,
            unit,
            &c.series,
            s.since,
            s.until,
        ));
    }
    body.push_str(
        "</div><p class=\"muted\">JSON: <code>/api/v1/probes</code>, <code>/report?format=json</code> · metrics: <code>/metrics</code></p>",
    );
    page("lookout status", &body, Some(15))
}
