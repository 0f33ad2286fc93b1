//! Message text from templates (minijinja), with defaults a user can
//! override per destination. Every template is compiled and rendered
//! against a sample notification when the configuration loads: a broken
//! template is a configuration error, not a notification lost at 3 a.m.
//!
//! The context is the webhook payload as Alertmanager sends it (`status`,
//! `alerts`, `commonLabels`, `groupLabels`, `externalURL`…) plus `subject`
//! (`[FIRING:2] RedisHighMemoryUsage (cache)`), `firing` and `resolved`
//! (the alerts in each state) and their counts. The `digest_*` parts render
//! a digest of many groups instead ([`super::digest::Digest`]: `subject`,
//! `groups` with each one's `title`, `status` and `links`, and the counts).

use minijinja::Environment;

use super::payload::Payload;

/// The subject line in Alertmanager's manner
/// (`[FIRING:2] RedisHighMemoryUsage (cache)`): the default of every part
/// that is one line.
pub const SUBJECT: &str = "{{ subject }}";

/// A destination's templates, compiled once when it is built: its parts'
/// defaults (the destination type's own) with the user's overrides.
/// Rendering is then a lookup and an evaluation, not a parse per message.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("parts", &self.env.templates().map(|(n, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

impl Templates {
    /// Compiles every part of `defaults` (part name, default source), each
    /// replaced by its override when there is one. An override of a part
    /// the type does not have, or one that does not compile or render
    /// against a sample notification, is an error naming the part.
    pub fn compile(
        type_name: &str,
        defaults: &[(&'static str, &'static str)],
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> Result<Templates, String> {
        for part in overrides.keys() {
            if !defaults.iter().any(|(p, _)| p == part) {
                let known: Vec<&str> = defaults.iter().map(|(p, _)| *p).collect();
                return Err(format!(
                    "unknown template `{part}` for type `{type_name}` (it has: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        for (part, default) in defaults {
            let src = overrides.get(*part).cloned().unwrap_or_else(|| (*default).to_string());
            env.add_template_owned(*part, src)
                .map_err(|e| format!("template `{part}` does not compile: {e}"))?;
        }
        let t = Templates { env };
        let (sample, digest) = (sample(), sample_digest());
        for (part, _) in defaults {
            if part.starts_with(super::digest::PART_PREFIX) {
                t.render_digest(part, &digest)?;
            } else {
                t.render(part, &sample)?;
            }
        }
        Ok(t)
    }

    /// Renders one `digest_*` part for a digest.
    pub fn render_digest(&self, part: &str, d: &super::digest::Digest) -> Result<String, String> {
        let t = self.env.get_template(part).map_err(|e| format!("template `{part}`: {e}"))?;
        t.render(minijinja::Value::from_serialize(d))
            .map_err(|e| format!("template `{part}`: {e}"))
    }

    /// Renders one part for a notification.
    pub fn render(&self, part: &str, p: &Payload) -> Result<String, String> {
        let t = self.env.get_template(part).map_err(|e| format!("template `{part}`: {e}"))?;
        t.render(context(p)).map_err(|e| format!("template `{part}`: {e}"))
    }
}

fn context(p: &Payload) -> minijinja::Value {
    let mut v = serde_json::to_value(p).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = v.as_object_mut() {
        let firing: Vec<_> = p.firing().cloned().collect();
        let resolved: Vec<_> = p.resolved().cloned().collect();
        obj.insert("subject".into(), p.subject().into());
        obj.insert("num_firing".into(), firing.len().into());
        obj.insert("num_resolved".into(), resolved.len().into());
        obj.insert("firing".into(), serde_json::to_value(firing).unwrap_or_default());
        obj.insert("resolved".into(), serde_json::to_value(resolved).unwrap_or_default());
    }
    minijinja::Value::from_serialize(&v)
}

/// A notification with every field set, for test renders.
pub fn sample() -> Payload {
    let body = r#"{"version":"4","groupKey":"{}:{alertname=\"RedisHighMemoryUsage\"}","truncatedAlerts":0,"status":"firing","receiver":"lookout","groupLabels":{"alertname":"RedisHighMemoryUsage"},"commonLabels":{"alertname":"RedisHighMemoryUsage","severity":"critical"},"commonAnnotations":{},"externalURL":"http://alertmanager:9093","alerts":[{"status":"firing","labels":{"alertname":"RedisHighMemoryUsage","instance":"redis:6379","severity":"critical"},"annotations":{"summary":"Redis memory above 90% of maxmemory","runbook_url":"https://example/runbook"},"startsAt":"2026-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"0123456789abcdef"},{"status":"resolved","labels":{"alertname":"RedisHighMemoryUsage","instance":"redis-2:6379","severity":"critical"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T00:10:00Z","generatorURL":"","fingerprint":"fedcba9876543210"}]}"#;
    serde_json::from_str(body).unwrap_or_else(|_| unreachable_payload())
}

fn unreachable_payload() -> Payload {
    Payload {
        version: "4".into(),
        group_key: "{}:{}".into(),
        truncated_alerts: 0,
        status: "firing".into(),
        receiver: String::new(),
        group_labels: Default::default(),
        common_labels: Default::default(),
        common_annotations: Default::default(),
        external_url: String::new(),
        alerts: vec![],
        extra: Default::default(),
    }
}

/// A digest of two groups, one firing and one resolved, for test renders.
pub fn sample_digest() -> super::digest::Digest {
    let firing = sample();
    let mut resolved = firing.clone();
    resolved.group_key = format!("{}/2", firing.group_key);
    resolved.status = "resolved".into();
    for a in &mut resolved.alerts {
        a.status = "resolved".into();
    }
    let queued: Vec<super::outbox::Pending> = [firing, resolved]
        .iter()
        .enumerate()
        .map(|(i, p)| super::outbox::Pending {
            id: i as i64,
            attempts: 0,
            created: 0.0,
            payload: serde_json::to_string(p).unwrap_or_default(),
            group_key: p.group_key.clone(),
        })
        .collect();
    super::digest::Digest::build(&queued, 90.0).unwrap_or_else(|| super::digest::Digest {
        subject: String::new(),
        groups: vec![],
        num_groups: 0,
        num_firing: 0,
        num_resolved: 0,
        num_notifications: 0,
        waited: String::new(),
        external_url: String::new(),
        ids: vec![],
    })
}

/// The notification `lookout relay send-test` sends: one firing alert that
/// says what it is.
pub fn test_notification() -> Payload {
    let mut p = sample();
    p.group_key = format!("{{}}:{{alertname=\"LookoutTestNotification\"}}/{}", crate::probe::unix_now());
    p.group_labels = [("alertname".to_string(), "LookoutTestNotification".to_string())].into();
    p.common_labels = [
        ("alertname".to_string(), "LookoutTestNotification".to_string()),
        ("severity".to_string(), "info".to_string()),
    ]
    .into();
    p.alerts.truncate(1);
    if let Some(a) = p.alerts.first_mut() {
        a.labels = p.common_labels.clone();
        a.annotations = [(
            "summary".to_string(),
            "Test notification from lookout: this destination works.".to_string(),
        )]
        .into();
    }
    p
}

/// An informational notice that is not an alert, such as the record of a
/// controlled flush: resolved (nothing to act on), `severity: info`, the
/// title as its group's name (so every subject line reads
/// `[RESOLVED] <title> (info)`) and `text` as its summary, which every
/// destination's default template shows.
pub fn informational(title: &str, text: &str) -> Payload {
    let mut p = sample();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    p.status = "resolved".into();
    p.group_key = format!("{{}}:{{alertname={title:?}}}/{}", crate::probe::unix_now());
    p.group_labels = [("alertname".to_string(), title.to_string())].into();
    p.common_labels = [
        ("alertname".to_string(), title.to_string()),
        ("severity".to_string(), "info".to_string()),
    ]
    .into();
    p.common_annotations = [("summary".to_string(), text.to_string())].into();
    p.alerts.truncate(1);
    if let Some(a) = p.alerts.first_mut() {
        a.status = "resolved".into();
        a.labels = p.common_labels.clone();
        a.annotations = p.common_annotations.clone();
        a.starts_at = now.clone();
        a.ends_at = now;
        a.generator_url = String::new();
        a.fingerprint = format!("{:016x}", crate::probe::unix_now().to_bits());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: &[(&str, &str)] = &[
        ("title", SUBJECT),
        ("text", "{% for a in alerts %}{{ a.labels.alertname }} {% endfor %}"),
    ];

    #[test]
    fn defaults_render() {
        let t = Templates::compile("t", PARTS, &Default::default()).unwrap();
        let p = sample();
        assert_eq!(t.render("title", &p).unwrap(), p.subject());
        assert_eq!(t.render("text", &p).unwrap(), "RedisHighMemoryUsage RedisHighMemoryUsage ");
    }

    #[test]
    fn broken_templates_are_config_errors() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("title".to_string(), "{{ subject ".to_string());
        assert!(Templates::compile("t", PARTS, &o).unwrap_err().contains("does not compile"));
        o.insert("title".to_string(), "{{ subject | nosuchfilter }}".to_string());
        assert!(Templates::compile("t", PARTS, &o).is_err());
        let mut o = std::collections::BTreeMap::new();
        o.insert("subject".to_string(), "x".to_string());
        assert!(Templates::compile("t", PARTS, &o).unwrap_err().contains("unknown template"));
    }

    #[test]
    fn an_override_replaces_its_part_only() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("title".to_string(), "ALERT {{ num_firing }}".to_string());
        let t = Templates::compile("t", PARTS, &o).unwrap();
        let p = sample();
        assert_eq!(t.render("title", &p).unwrap(), "ALERT 1");
        assert!(t.render("text", &p).unwrap().starts_with("RedisHighMemoryUsage"));
    }
}
