//! Grafana, as `lookout doctor` sees it: the `grafana:` section of the
//! configuration and the two checks the guide's troubleshooting list does by
//! hand — the Prometheus datasource answers, and the *Redis Cache Overview*
//! dashboard is where the runbooks send people.
//!
//! Only Grafana's HTTP API is used (`/api/datasources`,
//! `/api/datasources/uid/{uid}/health`, `/api/search`), with a
//! service-account token: a Viewer token is enough for all three.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::value::{http_url, opt_duration, read_secret};
use crate::config::{Problem, Secret};

/// The dashboard the runbooks link to, by title.
pub const DEFAULT_DASHBOARD: &str = "Redis Cache Overview";
/// The folder the provisioning puts it in.
pub const DEFAULT_FOLDER: &str = "Trinity Cache";
/// Per-request timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `grafana:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGrafana {
    /// Base URL of Grafana (http or https).
    #[serde(deserialize_with = "http_url")]
    #[schemars(with = "String")]
    pub url: url::Url,
    /// A service-account token (Viewer role is enough). Prefer `token_file`.
    pub token: Option<Secret>,
    /// A file holding the token, read when the configuration is loaded.
    pub token_file: Option<PathBuf>,
    /// Per-request timeout (default 10s).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// The Prometheus datasource's uid (default: the first datasource of
    /// type `prometheus`, the default one first).
    pub datasource_uid: Option<String>,
    /// Title of the dashboard that must exist (default `Redis Cache Overview`).
    pub dashboard: Option<String>,
    /// Folder the dashboard must be in (default `Trinity Cache`).
    pub folder: Option<String>,
}

/// The `grafana:` section after validation.
#[derive(Debug, Clone)]
pub struct GrafanaConfig {
    /// Base URL.
    pub url: url::Url,
    /// The service-account token.
    pub token: Secret,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The datasource to check, when fixed.
    pub datasource_uid: Option<String>,
    /// The dashboard's title.
    pub dashboard: String,
    /// The dashboard's folder.
    pub folder: String,
}

/// Validates `grafana:`; a problem names its field. A section without a
/// token is refused: Grafana answers an anonymous search with an empty
/// list, which would read as "dashboard missing".
pub fn build(file: &Path, raw: RawGrafana, problems: &mut Vec<Problem>) -> Option<GrafanaConfig> {
    let problem = |field: &str, message: String| Problem {
        file: file.to_path_buf(),
        line: None,
        column: None,
        field: Some(format!("grafana.{field}")),
        message,
    };
    let token = match read_secret(&raw.token, &raw.token_file, "token") {
        Ok(Some(t)) => t,
        Ok(None) => {
            problems.push(problem(
                "token_file",
                "a service-account token is required: give `token_file` (or `token`)".into(),
            ));
            return None;
        }
        Err(e) => {
            problems.push(problem("token_file", e));
            return None;
        }
    };
    Some(GrafanaConfig {
        url: raw.url,
        token,
        timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
        datasource_uid: raw.datasource_uid,
        dashboard: raw.dashboard.unwrap_or_else(|| DEFAULT_DASHBOARD.into()),
        folder: raw.folder.unwrap_or_else(|| DEFAULT_FOLDER.into()),
    })
}

/// What the two Grafana checks found: `Ok(found)` or `Err((found, fix))`.
pub type Finding = Result<String, (String, String)>;

/// What the Grafana checks found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The Prometheus datasource's health.
    pub datasource: Finding,
    /// The dashboard in its folder.
    pub dashboard: Finding,
    /// Grafana's clock (its `Date` header, whole seconds) minus lookout's.
    pub skew: Option<f64>,
}

/// A Grafana API client with the token.
struct Api<'a> {
    cfg: &'a GrafanaConfig,
    client: reqwest::Client,
    /// The skew read from the last response's `Date` header.
    skew: std::sync::Mutex<Option<f64>>,
}

impl Api<'_> {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, serde_json::Value), String> {
        let mut url = self.cfg.url.join(path).map_err(|e| format!("invalid Grafana URL: {e}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let resp = self
            .client
            .get(url)
            .bearer_auth(self.cfg.token.expose())
            .send()
            .await
            .map_err(|e| crate::http::describe(&e))?;
        let status = resp.status().as_u16();
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
        if let Some(d) = date {
            // The header has whole seconds: compare with the middle of the
            // second lookout was in.
            let now = crate::probe::unix_now();
            *self.skew.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.timestamp() as f64 + 0.5 - now);
        }
        let body = resp.json::<serde_json::Value>().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}

/// Runs both checks, and reads Grafana's clock on the way.
pub async fn check(cfg: &GrafanaConfig) -> Outcome {
    let client = match crate::http::client_builder(cfg.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            let f = Err((format!("cannot build an HTTP client: {e}"), String::new()));
            return Outcome {
                datasource: f.clone(),
                dashboard: f,
                skew: None,
            };
        }
    };
    let api = Api {
        cfg,
        client,
        skew: std::sync::Mutex::new(None),
    };
    let datasource = datasource(&api).await;
    let dashboard = dashboard(&api).await;
    let skew = *api.skew.lock().unwrap_or_else(|p| p.into_inner());
    Outcome {
        datasource,
        dashboard,
        skew,
    }
}

/// How a 401/403 reads, the same for both checks.
fn refused(status: u16) -> (String, String) {
    (
        format!("Grafana refused the token (HTTP {status})"),
        "give lookout a valid service-account token with the Viewer role (`grafana.token_file`)".into(),
    )
}

async fn datasource(api: &Api<'_>) -> Finding {
    let unreachable = |e: String| {
        (
            format!("Grafana did not answer: {e}"),
            "check `grafana.url` and that Grafana runs".to_string(),
        )
    };
    let uid = match &api.cfg.datasource_uid {
        Some(u) => u.clone(),
        None => {
            let (status, list) = api.get("api/datasources", &[]).await.map_err(unreachable)?;
            if matches!(status, 401 | 403) {
                return Err(refused(status));
            }
            let all = list.as_array().cloned().unwrap_or_default();
            let mut proms: Vec<&serde_json::Value> = all.iter().filter(|d| d["type"] == "prometheus").collect();
            proms.sort_by_key(|d| !d["isDefault"].as_bool().unwrap_or(false));
            match proms.first().and_then(|d| d["uid"].as_str()) {
                Some(u) => u.to_string(),
                None => {
                    return Err((
                        format!("no Prometheus datasource among {} datasources", all.len()),
                        "provision the Prometheus datasource (deploy/grafana/provisioning/datasources/prometheus.yml)".into(),
                    ));
                }
            }
        }
    };
    let (status, body) = api
        .get(
            &format!(
                "api/datasources/uid/{}/health",
                percent_encoding::utf8_percent_encode(&uid, percent_encoding::NON_ALPHANUMERIC)
            ),
            &[],
        )
        .await
        .map_err(unreachable)?;
    let message = body["message"].as_str().unwrap_or("").to_string();
    match status {
        200 if body["status"] == "OK" => Ok(format!("datasource `{uid}` is healthy: {message}")),
        401 | 403 => Err(refused(status)),
        404 => Err((
            format!("no datasource with uid `{uid}`"),
            "set `grafana.datasource_uid` to the Prometheus datasource's uid, or leave it out to use the default one".into(),
        )),
        _ => Err((
            format!("datasource `{uid}` is unhealthy (HTTP {status}): {message}"),
            "point the datasource's URL at the Prometheus lookout queries, and check that Grafana can reach it".into(),
        )),
    }
}

async fn dashboard(api: &Api<'_>) -> Finding {
    let want = &api.cfg.dashboard;
    let (status, body) = api
        .get("api/search", &[("type", "dash-db"), ("query", want.as_str())])
        .await
        .map_err(|e| {
            (
                format!("Grafana did not answer: {e}"),
                "check `grafana.url` and that Grafana runs".to_string(),
            )
        })?;
    if matches!(status, 401 | 403) {
        return Err(refused(status));
    }
    let hits = body.as_array().cloned().unwrap_or_default();
    let same: Vec<&serde_json::Value> = hits.iter().filter(|d| d["title"].as_str() == Some(want.as_str())).collect();
    // The General folder has no folderTitle.
    let folder_of = |d: &serde_json::Value| d["folderTitle"].as_str().unwrap_or("General").to_string();
    if same.iter().any(|d| folder_of(d) == api.cfg.folder) {
        return Ok(format!("dashboard “{want}” is in the “{}” folder", api.cfg.folder));
    }
    let fix = "provision deploy/grafana/dashboards/redis-cache-overview.json with deploy/grafana/provisioning/dashboards/dashboards.yml (folder set there)".to_string();
    match same.first() {
        Some(d) => Err((
            format!("dashboard “{want}” is in the “{}” folder, not “{}”", folder_of(d), api.cfg.folder),
            fix,
        )),
        None => Err((format!("no dashboard titled “{want}”"), fix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(token_file: Option<PathBuf>) -> RawGrafana {
        RawGrafana {
            url: url::Url::parse("http://grafana:3000").unwrap(),
            token: None,
            token_file,
            timeout: None,
            datasource_uid: None,
            dashboard: None,
            folder: None,
        }
    }

    #[test]
    fn a_section_without_a_token_is_refused_at_its_field() {
        let mut problems = Vec::new();
        assert!(build(Path::new("lookout.yaml"), raw(None), &mut problems).is_none());
        assert_eq!(problems[0].field.as_deref(), Some("grafana.token_file"));
    }

    #[test]
    fn the_token_is_read_from_its_file_and_the_defaults_are_the_guides() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "glsa_x\n").unwrap();
        let mut problems = Vec::new();
        let g = build(Path::new("lookout.yaml"), raw(Some(f)), &mut problems).unwrap();
        assert!(problems.is_empty());
        assert_eq!(g.token.expose(), "glsa_x");
        assert_eq!((g.dashboard.as_str(), g.folder.as_str()), (DEFAULT_DASHBOARD, DEFAULT_FOLDER));
        let mut problems = Vec::new();
        assert!(build(Path::new("lookout.yaml"), raw(Some(dir.path().join("missing"))), &mut problems).is_none());
        assert!(problems[0].message.contains("cannot read"), "{:?}", problems[0].message);
    }
}
