//! Message text from templates (minijinja), with defaults a user can
//! override per destination. Every template is compiled and rendered
//! against a sample notification when the configuration loads: a broken
//! template is a configuration error, not a notification lost at 3 a.m.
//!
//! The context is the webhook payload as Alertmanager sends it (`status`,
//! `alerts`, `commonLabels`, `groupLabels`, `externalURL`…) plus `subject`
//! (`[FIRING:2] RedisHighMemoryUsage (cache)`), `firing` and `resolved`
//! (the alerts in each state) and their counts.

use minijinja::Environment;

use super::payload::Payload;

/// Parts each destination type renders, with their defaults.
fn defaults(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "slack" => &[("title", DEFAULT_SUBJECT), ("text", DEFAULT_SLACK_TEXT)],
        "email" => &[("subject", DEFAULT_SUBJECT), ("text", DEFAULT_TEXT), ("html", DEFAULT_HTML)],
        "pagerduty" => &[("summary", DEFAULT_SUBJECT)],
        "log" => &[("text", DEFAULT_SUBJECT)],
        _ => &[],
    }
}

const DEFAULT_SUBJECT: &str = "{{ subject }}";

const DEFAULT_SLACK_TEXT: &str = "{% for a in alerts %}{% if a.status == 'firing' %}:red_circle:{% else %}:large_green_circle:{% endif %} *{{ a.labels.alertname }}*{% if a.labels.instance %} on `{{ a.labels.instance }}`{% endif %}{% if a.labels.severity %} ({{ a.labels.severity }}){% endif %}: {{ a.annotations.summary or a.annotations.description or '' }}
{% if a.annotations.runbook_url %}<{{ a.annotations.runbook_url }}|Runbook> {% endif %}{% if a.annotations.dashboard_url %}<{{ a.annotations.dashboard_url }}|Dashboard> {% endif %}{% if a.generatorURL %}<{{ a.generatorURL }}|Source>{% endif %}
{% endfor %}";

const DEFAULT_TEXT: &str = "{{ subject }}
{% if firing %}
Firing ({{ num_firing }}):
{% for a in firing %}- {{ a.labels.alertname }}{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}: {{ a.annotations.summary or '' }}
  since {{ a.startsAt }}{% for k, v in a.labels|items %}{% if k != 'alertname' %} {{ k }}={{ v }}{% endif %}{% endfor %}
{% if a.annotations.description %}  {{ a.annotations.description }}
{% endif %}{% if a.annotations.runbook_url %}  Runbook: {{ a.annotations.runbook_url }}
{% endif %}{% if a.generatorURL %}  Source: {{ a.generatorURL }}
{% endif %}{% endfor %}{% endif %}{% if resolved %}
Resolved ({{ num_resolved }}):
{% for a in resolved %}- {{ a.labels.alertname }}{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}: {{ a.annotations.summary or '' }} (ended {{ a.endsAt }})
{% endfor %}{% endif %}
Sent by lookout{% if externalURL %} for {{ externalURL }}{% endif %}
";

const DEFAULT_HTML: &str = "<!doctype html><html><body style=\"font-family:sans-serif\">
<h2 style=\"color:{% if status == 'firing' %}#c62828{% else %}#1e7b34{% endif %}\">{{ subject }}</h2>
{% for a in alerts %}<div style=\"border-left:4px solid {% if a.status == 'firing' %}#c62828{% else %}#1e7b34{% endif %};padding:4px 10px;margin:8px 0\">
<b>{{ a.labels.alertname }}</b> {{ a.status }}{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}<br>
{{ a.annotations.summary or '' }}<br>
<small>{% for k, v in a.labels|items %}{{ k }}={{ v }} {% endfor %}</small><br>
{% if a.annotations.runbook_url %}<a href=\"{{ a.annotations.runbook_url }}\">Runbook</a> {% endif %}{% if a.generatorURL %}<a href=\"{{ a.generatorURL }}\">Source</a>{% endif %}
</div>{% endfor %}
<p style=\"color:#777\">Sent by lookout</p></body></html>";

/// The parts a destination type has.
pub fn parts(kind: &str) -> Vec<&'static str> {
    defaults(kind).iter().map(|(k, _)| *k).collect()
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

/// Renders one part for a notification: the override if any, else the default.
pub fn render(kind: &str, overrides: &std::collections::BTreeMap<String, String>, part: &str, p: &Payload) -> Result<String, String> {
    let src = overrides
        .get(part)
        .map(String::as_str)
        .or_else(|| defaults(kind).iter().find(|(k, _)| *k == part).map(|(_, v)| *v))
        .unwrap_or("");
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.render_str(src, context(p)).map_err(|e| format!("template `{part}`: {e}"))
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

/// Checks a destination's overrides: known parts, compiling, rendering.
pub fn check(kind: &str, overrides: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    let known = parts(kind);
    for (part, src) in overrides {
        if !known.contains(&part.as_str()) {
            return Err(format!(
                "unknown template `{part}` for type `{kind}` (it has: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ));
        }
        let mut env = Environment::new();
        env.add_template("t", src)
            .map_err(|e| format!("template `{part}` does not compile: {e}"))?;
        render(kind, overrides, part, &sample())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render() {
        let p = sample();
        for kind in ["slack", "email", "pagerduty", "log"] {
            for part in parts(kind) {
                let out = render(kind, &Default::default(), part, &p).unwrap();
                assert!(out.contains("RedisHighMemoryUsage"), "{kind}/{part}: {out}");
            }
        }
        let text = render("email", &Default::default(), "text", &p).unwrap();
        assert!(
            text.contains("Runbook: https://example/runbook") && text.contains("Resolved (1)"),
            "{text}"
        );
    }

    #[test]
    fn broken_templates_are_config_errors() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("title".to_string(), "{{ subject ".to_string());
        assert!(check("slack", &o).unwrap_err().contains("does not compile"));
        o.insert("title".to_string(), "{{ subject | nosuchfilter }}".to_string());
        assert!(check("slack", &o).is_err());
        let mut o = std::collections::BTreeMap::new();
        o.insert("subject".to_string(), "x".to_string());
        assert!(check("slack", &o).unwrap_err().contains("unknown template"));
    }
}
