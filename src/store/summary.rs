//! What the history holds beside the raw observations: cross-check rounds
//! as stored, and the summaries read back over a window (agreement per
//! metric and source, availability per probe) for SLA reports and the
//! availability gauges.
//!
//! These are plain data. Judging them (the window's overall verdict) is the
//! cross-check's business, in `crosscheck::history`.

use std::collections::BTreeMap;

use serde::Serialize;

/// A cross-check round as stored: its overall verdict and one row per
/// (metric, source). Verdicts are their stable names (`agree`, `stale`, …),
/// the strings the `verdict` columns have always held.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRound {
    /// When the round ran, Unix seconds.
    pub timestamp: f64,
    /// The round's overall verdict.
    pub verdict: &'static str,
    /// One row per judged (metric, source).
    pub entries: Vec<StoredEntry>,
}

/// One judged (metric, source) of a [`StoredRound`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    /// Canonical metric name.
    pub metric: String,
    /// Source probe name.
    pub source: String,
    /// The verdict's name.
    pub verdict: &'static str,
    /// The source's value.
    pub value: Option<f64>,
    /// The reference value it was compared with.
    pub reference_value: Option<f64>,
    /// How far outside the bound.
    pub deviation: Option<f64>,
    /// Why the verdict is not `agree`; `None` for `agree`.
    pub reason: Option<String>,
}

/// One (metric, source) over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairSummary {
    /// Canonical metric.
    pub metric: String,
    /// Source probe.
    pub source: String,
    /// Rounds in the window.
    pub rounds: u64,
    /// Rounds judged agree.
    pub agree: u64,
    /// Rounds judged disagree.
    pub disagree: u64,
    /// agree / (agree + disagree); `None` when never judged.
    pub agreement_ratio: Option<f64>,
    /// Largest |deviation| among disagreements.
    pub worst_deviation: Option<f64>,
    /// First and last disagreement, Unix seconds.
    pub first_disagree: Option<f64>,
    /// Last disagreement.
    pub last_disagree: Option<f64>,
    /// Why it disagreed the last time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_disagree_reason: Option<String>,
}

/// A probe's availability over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Availability {
    /// Probe name.
    pub probe: String,
    /// Runs in the window.
    pub runs: u64,
    /// Successful runs.
    pub ok: u64,
    /// ok / runs.
    pub ratio: Option<f64>,
}

/// The window's summary. Its JSON form (with the verdict beside it) is
/// `lookout report --window`'s stable interface.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowSummary {
    /// Start of the window, Unix seconds.
    pub since: f64,
    /// End of the window.
    pub until: f64,
    /// Rounds stored in the window.
    pub rounds: u64,
    /// Rounds by overall verdict: agree, disagree, incomplete.
    pub round_verdicts: BTreeMap<String, u64>,
    /// Per (metric, source).
    pub pairs: Vec<PairSummary>,
    /// Per probe.
    pub availability: Vec<Availability>,
}

/// A controlled flush the daemon ran, as the history keeps it: the figures
/// a list needs, and the Markdown record for the change ticket. The JSON
/// form is `GET /api/v1/redis/flushes`' stable interface.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredFlush {
    /// Its id (sorts by start time).
    pub id: String,
    /// The probe that named the Redis.
    pub probe: String,
    /// The Redis, redacted.
    pub target: String,
    /// The SCAN MATCH pattern.
    pub pattern: String,
    /// How it ended: `done`, `dry_run`, `interrupted` or `failed`; while
    /// it runs, where it stands (`surveying`, `snapshot`, `deleting`,
    /// `paused`). A row the daemon left running when it was killed turns
    /// `interrupted` when the daemon starts again.
    pub state: String,
    /// Who asked.
    pub user: String,
    /// Where the request came from (the client's address), when known.
    pub origin: String,
    /// What was asked: the request with its defaults filled in (warm URLs
    /// redacted).
    pub request: serde_json::Value,
    /// When it started, Unix seconds.
    pub started: f64,
    /// When it ended; while it runs, its start.
    pub finished: f64,
    /// When the daemon last wrote its progress: for a flush cut short by a
    /// kill, the last moment its figures are known for.
    pub updated: f64,
    /// Why it failed or was cut short.
    pub error: Option<String>,
    /// Keys the survey matched.
    pub matched: u64,
    /// Keys deleted.
    pub deleted: u64,
    /// The Markdown record.
    pub record: String,
}

/// The `flushes` columns [`StoredFlush::from_row`] reads, in its order.
pub(super) const FLUSH_COLUMNS: &str =
    "id, probe, target, pattern, state, user, started, finished, matched, deleted, record, origin, request, updated, error";

impl StoredFlush {
    /// A row selected with [`FLUSH_COLUMNS`].
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFlush> {
        Ok(StoredFlush {
            id: r.get(0)?,
            probe: r.get(1)?,
            target: r.get(2)?,
            pattern: r.get(3)?,
            state: r.get(4)?,
            user: r.get(5)?,
            started: r.get(6)?,
            finished: r.get(7)?,
            matched: r.get::<_, i64>(8)?.max(0) as u64,
            deleted: r.get::<_, i64>(9)?.max(0) as u64,
            record: r.get(10)?,
            origin: r.get(11)?,
            request: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
            updated: r.get(13)?,
            error: r.get(14)?,
        })
    }
}

/// The Markdown record of a flush its daemon did not live to finish
/// (`was`: the state its last update wrote; `why`: what to do about it),
/// from the figures of its last update.
pub fn interrupted_record(f: &StoredFlush, was: &str, why: &str) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let when = |t: f64| {
        chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|d| d.to_rfc3339())
            .unwrap_or_else(|| format!("{t}"))
    };
    let from = if f.origin.is_empty() {
        String::new()
    } else {
        format!(" from {}", cell(&f.origin))
    };
    format!(
        "# Redis controlled flush: interrupted\n\n{why}.\n\n| | |\n|---|---|\n| what | the keys matching `{}` on {} |\n| asked | `{}` |\n| by | {}{from} |\n| started | {} (UTC) |\n| last update | {} (UTC), while {was} |\n| keys matched | {} |\n| keys deleted | {} by the last update (any deleted after it are not counted) |\n\nRun by the lookout daemon (probe `{}`), which stopped before the flush ended (killed, or its node lost): a re-run of the same flush deletes the keys still matching.\n",
        cell(&f.pattern),
        cell(&f.target),
        cell(&f.request.to_string()),
        cell(&f.user),
        when(f.started),
        when(f.updated.max(f.started)),
        f.matched,
        f.deleted,
        cell(&f.probe),
    )
}
