//! Alertmanager's webhook payload, version 4, as Alertmanager 0.25 through
//! 0.34 send it. Unknown keys (newer versions add `notification_reason`,
//! `routeLabels`…) are accepted and kept, so a forwarded payload is the
//! payload received.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Always `"4"`.
    pub version: String,
    /// Stable identity of the alert group: the thread/incident key.
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// Alerts cut by `max_alerts`.
    #[serde(rename = "truncatedAlerts", default)]
    pub truncated_alerts: u64,
    /// `firing` if any alert fires, else `resolved`.
    pub status: String,
    /// The receiver's name (regex-escaped by Alertmanager).
    pub receiver: String,
    /// Labels of the `group_by` keys.
    #[serde(rename = "groupLabels", default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels common to every alert.
    #[serde(rename = "commonLabels", default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations common to every alert.
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's external URL.
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Keys this version does not know, kept as received.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Identity.
    pub labels: BTreeMap<String, String>,
    /// Summary, description, runbook_url…
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` while firing.
    #[serde(rename = "endsAt", default)]
    pub ends_at: String,
    /// Link to the expression that fired.
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// FNV-1a of the labels, 16 hex digits.
    #[serde(default)]
    pub fingerprint: String,
    /// Unknown keys, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why a body is not a webhook payload; the message names the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

impl Payload {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<Payload, PayloadError> {
        Envelope::parse(body)?;
        serde_json::from_slice(body).map_err(json_error)
    }

    /// Alerts firing.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.status == "firing")
    }

    /// Alerts resolved.
    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.status == "resolved")
    }

    /// The subject in Alertmanager's manner:
    /// `[FIRING:2] RedisHighMemoryUsage (cache prod)`.
    pub fn subject(&self) -> String {
        let mut s = if self.status == "firing" {
            format!("[FIRING:{}]", self.firing().count())
        } else {
            "[RESOLVED]".to_string()
        };
        let group: Vec<&str> = self.group_labels.values().map(String::as_str).collect();
        if !group.is_empty() {
            s.push(' ');
            s.push_str(&group.join(" "));
        }
        let rest: Vec<&str> = self
            .common_labels
            .iter()
            .filter(|(k, _)| !self.group_labels.contains_key(*k))
            .map(|(_, v)| v.as_str())
            .collect();
        if !rest.is_empty() {
            s.push_str(&format!(" ({})", rest.join(" ")));
        }
        s
    }

    /// Identity for de-duplication of HA replicas' copies: the group, its
    /// status and each alert's fingerprint, status and times.
    pub fn dedup_key(&self) -> String {
        dedup_key(
            &self.group_key,
            &self.status,
            self.alerts
                .iter()
                .map(|a| (fingerprint_of(a), a.status.as_str(), a.starts_at.as_str(), a.ends_at.as_str())),
        )
    }
}

fn json_error(e: serde_json::Error) -> PayloadError {
    let msg = e.to_string();
    if e.is_syntax() || e.is_eof() {
        PayloadError(format!("invalid JSON: {msg}"))
    } else {
        PayloadError(format!("not an Alertmanager webhook payload: {msg}"))
    }
}

/// What the relay needs of a body to accept it (validation, routing and
/// de-duplication), read in place in one pass. It checks every field
/// [`Payload`] declares against the same type, keeping only what intake
/// uses, and walks every key `Payload` does not know with [`Strict`], so it
/// accepts exactly the bodies `Payload` accepts. The whole `Payload` is
/// costly to parse: `#[serde(flatten)]` buffers every key and value before
/// sorting them out, and under ingest load malloc and free took a third of
/// lookout's user CPU (`perf record` during `bench/relay.sh`). The body is
/// stored as received and parsed whole when it is delivered. One pass, not
/// a strict walk over the whole body followed by a derived parse that skips
/// the unknown keys: parsing took 32.6k of the 159k instructions an accepted
/// webhook cost, and takes 17.1k in one pass (callgrind, 2,000 webhooks of
/// bench/lib.sh's payload).
#[derive(Debug)]
pub struct Envelope<'a> {
    version: Cow<'a, str>,
    /// The group key.
    pub group_key: Cow<'a, str>,
    status: Cow<'a, str>,
    /// Labels common to every alert: what routes match on.
    pub common_labels: BTreeMap<String, String>,
    alerts: Vec<EnvelopeAlert<'a>>,
}

#[derive(Debug)]
struct EnvelopeAlert<'a> {
    status: Cow<'a, str>,
    labels: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    starts_at: Cow<'a, str>,
    ends_at: Cow<'a, str>,
    fingerprint: Cow<'a, str>,
}

/// A JSON string, borrowed from the body unless it has escapes (serde's own
/// `Cow<str>` always copies outside a derive).
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A map of strings to strings (`BTreeMap<String, String>` in [`Payload`]),
/// kept borrowed where it can be.
struct TextMap<'de>(BTreeMap<Cow<'de, str>, Cow<'de, str>>);

impl<'de> Deserialize<'de> for TextMap<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TextMap<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TextMap<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<TextMap<'de>, A::Error> {
                let mut m = BTreeMap::new();
                while let Some((k, v)) = a.next_entry::<Text, Text>()? {
                    m.insert(k.0, v.0);
                }
                Ok(TextMap(m))
            }
        }
        d.deserialize_map(V)
    }
}

/// A map of strings to strings that intake checks but does not keep.
struct CheckedMap;

impl<'de> Deserialize<'de> for CheckedMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CheckedMap, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CheckedMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<CheckedMap, A::Error> {
                while a.next_entry::<Text, Text>()?.is_some() {}
                Ok(CheckedMap)
            }
        }
        d.deserialize_map(V)
    }
}

/// Fills a field once: a key given twice is refused, as the derived
/// [`Payload`] refuses it.
fn once<T, E: serde::de::Error>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(v);
    Ok(())
}

/// A field [`Payload`] requires.
fn required<T, E: serde::de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(name))
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Envelope<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("struct Payload")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Envelope<'de>, A::Error> {
                let (mut version, mut group_key, mut truncated, mut status, mut receiver) = (None, None, None, None, None);
                let (mut group_labels, mut common_labels, mut common_annotations) = (None, None, None);
                let (mut external_url, mut alerts) = (None, None);
                while let Some(k) = a.next_key::<Text>()? {
                    match &*k.0 {
                        "version" => once(&mut version, "version", a.next_value::<Text>()?.0)?,
                        "groupKey" => once(&mut group_key, "groupKey", a.next_value::<Text>()?.0)?,
                        "truncatedAlerts" => once(&mut truncated, "truncatedAlerts", a.next_value::<u64>()?)?,
                        "status" => once(&mut status, "status", a.next_value::<Text>()?.0)?,
                        "receiver" => once(&mut receiver, "receiver", a.next_value::<Text>()?)?,
                        "groupLabels" => once(&mut group_labels, "groupLabels", a.next_value::<CheckedMap>()?)?,
                        "commonLabels" => once(&mut common_labels, "commonLabels", a.next_value::<BTreeMap<String, String>>()?)?,
                        "commonAnnotations" => once(&mut common_annotations, "commonAnnotations", a.next_value::<CheckedMap>()?)?,
                        "externalURL" => once(&mut external_url, "externalURL", a.next_value::<Text>()?)?,
                        "alerts" => once(&mut alerts, "alerts", a.next_value::<Vec<EnvelopeAlert<'de>>>()?)?,
                        _ => {
                            a.next_value::<Strict>()?;
                        }
                    }
                }
                // In `Payload`'s order, so a body missing several fields
                // names the same one.
                let version = required(version, "version")?;
                let group_key = required(group_key, "groupKey")?;
                let status = required(status, "status")?;
                required(receiver, "receiver")?;
                let alerts = required(alerts, "alerts")?;
                Ok(Envelope {
                    version,
                    group_key,
                    status,
                    common_labels: common_labels.unwrap_or_default(),
                    alerts,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for EnvelopeAlert<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EnvelopeAlert<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EnvelopeAlert<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("struct Alert")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<EnvelopeAlert<'de>, A::Error> {
                let (mut status, mut labels, mut annotations, mut starts_at) = (None, None, None, None);
                let (mut ends_at, mut generator_url, mut fingerprint) = (None, None, None);
                while let Some(k) = a.next_key::<Text>()? {
                    match &*k.0 {
                        "status" => once(&mut status, "status", a.next_value::<Text>()?.0)?,
                        "labels" => once(&mut labels, "labels", a.next_value::<TextMap>()?.0)?,
                        "annotations" => once(&mut annotations, "annotations", a.next_value::<CheckedMap>()?)?,
                        "startsAt" => once(&mut starts_at, "startsAt", a.next_value::<Text>()?.0)?,
                        "endsAt" => once(&mut ends_at, "endsAt", a.next_value::<Text>()?.0)?,
                        "generatorURL" => once(&mut generator_url, "generatorURL", a.next_value::<Text>()?)?,
                        "fingerprint" => once(&mut fingerprint, "fingerprint", a.next_value::<Text>()?.0)?,
                        _ => {
                            a.next_value::<Strict>()?;
                        }
                    }
                }
                let status = required(status, "status")?;
                let labels = required(labels, "labels")?;
                let starts_at = required(starts_at, "startsAt")?;
                Ok(EnvelopeAlert {
                    status,
                    labels,
                    starts_at,
                    ends_at: ends_at.unwrap_or_default(),
                    fingerprint: fingerprint.unwrap_or_default(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// A walk over a JSON value that keeps nothing but checks what building a
/// [`serde_json::Value`] checks: numbers in range (`1e99999` is not), strings
/// valid (no lone surrogate `"\ud800"`, valid UTF-8), nesting within
/// serde_json's limit. [`Envelope`] walks the keys it does not know with it:
/// the delivery's full [`Payload`] parse keeps them as `Value`s, so a
/// skipped value could be answered 200 and then fail at every destination.
/// It allocates nothing for plain strings, so intake stays cheap.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
                while a.next_element::<Strict>()?.is_some() {}
                Ok(Strict)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
                while a.next_entry::<Strict, Strict>()?.is_some() {}
                Ok(Strict)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Envelope<'a> {
    /// Parses and validates a request body: the rules every payload obeys.
    /// Whatever passes is what [`Payload::parse`] accepts at delivery.
    pub fn parse(body: &'a [u8]) -> Result<Envelope<'a>, PayloadError> {
        Envelope::parse_str(std::str::from_utf8(body).map_err(|e| PayloadError(format!("the body is not valid UTF-8: {e}")))?)
    }

    /// [`Envelope::parse`] of a body already known to be UTF-8: the whole
    /// body is checked once, rather than each string as the parser meets it
    /// and then the body again to store it.
    pub fn parse_str(body: &'a str) -> Result<Envelope<'a>, PayloadError> {
        let p: Envelope = serde_json::from_str(body).map_err(json_error)?;
        if p.version != "4" {
            return Err(PayloadError(format!(
                "unsupported payload version `{}` (expected \"4\")",
                p.version
            )));
        }
        for (what, s) in [("status", &*p.status)]
            .into_iter()
            .chain(p.alerts.iter().map(|a| ("alerts[].status", &*a.status)))
        {
            if s != "firing" && s != "resolved" {
                return Err(PayloadError(format!(
                    "field `{what}` must be \"firing\" or \"resolved\", not `{s}`"
                )));
            }
        }
        if p.alerts.is_empty() {
            return Err(PayloadError("field `alerts` is empty".into()));
        }
        Ok(p)
    }

    /// The same identity as [`Payload::dedup_key`].
    pub fn dedup_key(&self) -> String {
        dedup_key(
            &self.group_key,
            &self.status,
            self.alerts.iter().map(|a| {
                let fp = if a.fingerprint.is_empty() {
                    fnv_of_labels(a.labels.iter().map(|(k, v)| (&**k, &**v)))
                } else {
                    a.fingerprint.to_string()
                };
                (fp, &*a.status, &*a.starts_at, &*a.ends_at)
            }),
        )
    }
}

fn dedup_key<'x>(group_key: &str, status: &str, alerts: impl Iterator<Item = (String, &'x str, &'x str, &'x str)>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(group_key.as_bytes());
    h.update([0]);
    h.update(status.as_bytes());
    let mut alerts: Vec<String> = alerts
        .map(|(fp, status, starts, ends)| format!("{fp}|{status}|{starts}|{ends}"))
        .collect();
    alerts.sort();
    for a in alerts {
        h.update([0]);
        h.update(a.as_bytes());
    }
    hex(&h.finalize())
}

/// The alert's fingerprint, or Alertmanager's FNV-1a of its labels when absent.
pub fn fingerprint_of(a: &Alert) -> String {
    if !a.fingerprint.is_empty() {
        return a.fingerprint.clone();
    }
    fnv_of_labels(a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Alertmanager's fingerprint: FNV-1a over the sorted labels.
fn fnv_of_labels<'x>(labels: impl Iterator<Item = (&'x str, &'x str)>) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for (k, v) in labels {
        eat(k.as_bytes());
        eat(&[0xff]);
        eat(v.as_bytes());
        eat(&[0xff]);
    }
    format!("{h:016x}")
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM_025: &str = r#"{"receiver":"multi","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"ProbeDown","instance":"https://example.com","job":"synthetic","severity":"critical"},"annotations":{"summary":"Probe failed for https://example.com"},"startsAt":"2026-11-25T16:43:58Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom:9090/graph?g0.expr=probe_success+%3D%3D+0","fingerprint":"eca922e1ff7962e3"}],"groupLabels":{"alertname":"ProbeDown"},"commonLabels":{"alertname":"ProbeDown","job":"synthetic","severity":"critical"},"commonAnnotations":{},"externalURL":"http://am.example:19093","version":"4","groupKey":"{}:{alertname=\"ProbeDown\"}","truncatedAlerts":0}"#;

    /// A random JSON-ish fragment: mostly valid values, with the edge cases
    /// where a skipping parser and a building one part ways (huge exponents,
    /// lone surrogates, deep nesting, invalid UTF-8, control characters).
    fn fragment(rng: &mut impl rand::Rng, depth: u32) -> Vec<u8> {
        const LEAVES: &[&[u8]] = &[
            b"0",
            b"-0",
            b"1.5e308",
            b"1e309",
            b"1e99999",
            b"-1e99999",
            b"123456789012345678901234567890",
            b"true",
            b"null",
            b"\"ok\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\\ud800\"",
            b"\"\\udc00x\"",
            b"\"\\u0000\"",
            b"\"tab\there\"",
            b"\"\xff\xfe\"",
            b"\"\xc3\xa9\"",
            b"01",
            b"1.",
            b"\"\\x\"",
        ];
        match rng.random_range(0..10) {
            0..=5 => LEAVES[rng.random_range(0..LEAVES.len())].to_vec(),
            6 | 7 if depth < 8 => {
                let n = rng.random_range(0..4);
                let items: Vec<Vec<u8>> = (0..n).map(|_| fragment(rng, depth + 1)).collect();
                [b"[".to_vec(), items.join(&b","[..]), b"]".to_vec()].concat()
            }
            8 if depth < 8 => {
                let n = rng.random_range(0..3);
                let items: Vec<Vec<u8>> = (0..n)
                    .map(|i| [format!("\"k{i}\":").into_bytes(), fragment(rng, depth + 1)].concat())
                    .collect();
                [b"{".to_vec(), items.join(&b","[..]), b"}".to_vec()].concat()
            }
            _ => {
                // Nesting around serde_json's limit of 128.
                let d = rng.random_range(100..200);
                [vec![b'['; d], b"1".to_vec(), vec![b']'; d]].concat()
            }
        }
    }

    /// Whatever intake accepts, delivery parses, and the other way round, for
    /// a valid payload with an unknown key of arbitrary value (seeded, so a
    /// failure reproduces).
    #[test]
    fn intake_accepts_exactly_what_delivery_parses() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x100c0);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..5000 {
            let extra = fragment(&mut rng, 0);
            let body = [
                b"{\"notification_reason\":".to_vec(),
                extra,
                b",".to_vec(),
                AM_025.as_bytes()[1..].to_vec(),
            ]
            .concat();
            let intake = Envelope::parse(&body).is_ok();
            let delivery = serde_json::from_slice::<Payload>(&body).is_ok();
            assert_eq!(
                intake,
                delivery,
                "intake {intake}, delivery {delivery}: {}",
                String::from_utf8_lossy(&body)
            );
            if intake { accepted += 1 } else { refused += 1 }
        }
        // Both sides of the property were exercised.
        assert!(accepted > 500 && refused > 500, "{accepted} accepted, {refused} refused");
    }

    #[test]
    fn alertmanager_payloads_old_and_new() {
        let p = Payload::parse(AM_025.as_bytes()).unwrap();
        assert_eq!(p.subject(), "[FIRING:1] ProbeDown (synthetic critical)");
        assert_eq!(
            fingerprint_of(&Alert {
                fingerprint: String::new(),
                ..p.alerts[0].clone()
            }),
            "eca922e1ff7962e3"
        );
        let newer = AM_025.replacen(
            "\"version\":\"4\"",
            "\"version\":\"4\",\"notification_reason\":\"first notification\",\"routeLabels\":{\"team\":\"cache\"}",
            1,
        );
        let q = Payload::parse(newer.as_bytes()).unwrap();
        assert_eq!(q.extra["notification_reason"], "first notification");
        let round = serde_json::to_value(&q).unwrap();
        assert_eq!(round["routeLabels"]["team"], "cache", "unknown keys kept");
        assert_eq!(p.dedup_key(), q.dedup_key());
        let e = Envelope::parse(newer.as_bytes()).unwrap();
        assert_eq!(e.dedup_key(), p.dedup_key(), "one identity, however parsed");
        let no_fp = AM_025.replacen("\"fingerprint\":\"eca922e1ff7962e3\"", "\"fingerprint\":\"\"", 1);
        assert_eq!(
            Envelope::parse(no_fp.as_bytes()).unwrap().dedup_key(),
            p.dedup_key(),
            "fingerprint derived"
        );
        assert_eq!(e.common_labels, p.common_labels);
        assert_eq!(e.group_key, p.group_key);
    }

    #[test]
    fn the_envelope_accepts_what_the_payload_accepts() {
        for (body, ok) in [
            (AM_025.to_string(), true),
            (AM_025.replacen("\"truncatedAlerts\":0", "\"truncatedAlerts\":\"none\"", 1), false),
            (
                AM_025.replacen("\"externalURL\":\"http://am.example:19093\"", "\"externalURL\":7", 1),
                false,
            ),
            (AM_025.replacen("\"commonAnnotations\":{}", "\"commonAnnotations\":[]", 1), false),
            (AM_025.replacen("\"generatorURL\":", "\"generatorURL\":null,\"x\":", 1), false),
            (AM_025.replacen("\"receiver\":\"multi\",", "", 1), false),
            (
                AM_025.replacen("\"version\":\"4\"", "\"version\":\"4\",\"extra\":{\"any\":[1,null]}", 1),
                true,
            ),
            (AM_025.replacen("ProbeDown\"}", "Probe\\u00e9\"}", 1), true),
        ] {
            assert_eq!(Envelope::parse(body.as_bytes()).is_ok(), ok, "envelope: {body}");
            assert_eq!(serde_json::from_str::<Payload>(&body).is_ok(), ok, "payload: {body}");
        }
    }

    /// The shapes a hand-written reader could get wrong and a derived one
    /// does not: a key given twice, a key spelt with escapes, the struct as
    /// an array, a field of the wrong type inside an alert, `null` where a
    /// string is due.
    #[test]
    fn the_envelope_and_the_payload_agree_on_odd_shapes() {
        let alert = AM_025.find("\"alerts\":[").unwrap() + "\"alerts\":[".len();
        let alert_end = AM_025.rfind("],\"groupLabels\"").unwrap();
        let bodies = [
            AM_025.replacen("\"version\":\"4\"", "\"version\":\"4\",\"version\":\"4\"", 1),
            AM_025.replacen("\"fingerprint\"", "\"fingerprint\":\"\",\"fingerprint\"", 1),
            AM_025
                .replacen("\"notes\"", "", 1)
                .replacen("\"version\":\"4\"", "\"version\":\"4\",\"x\":1,\"x\":[]", 1),
            AM_025.replacen("\"groupKey\"", "\"\\u0067roupKey\"", 1),
            AM_025.replacen("\"startsAt\"", "\"\\u0073tartsAt\"", 1),
            format!("[{}]", &AM_025[1..AM_025.len() - 1]),
            format!(
                "{}[{}]{}",
                &AM_025[..alert],
                &AM_025[alert + 1..alert_end - 1],
                &AM_025[alert_end..]
            ),
            AM_025.replacen("\"labels\":{", "\"labels\":{\"n\":1,", 1),
            AM_025.replacen("\"labels\":{", "\"labels\":{\"a\":\"1\",\"a\":\"2\",", 1),
            AM_025.replacen("\"fingerprint\":\"eca922e1ff7962e3\"", "\"fingerprint\":null", 1),
            AM_025.replacen("\"endsAt\":\"0001-01-01T00:00:00Z\",", "", 1),
            AM_025.replacen("\"startsAt\":\"2026-11-25T16:43:58Z\",", "", 1),
            AM_025.replacen("\"truncatedAlerts\":0", "\"truncatedAlerts\":-1", 1),
            AM_025.replacen("\"commonLabels\":{", "\"commonLabels\":{\"e\":\"\\ud83d\\ude00\",", 1),
            AM_025.replacen("\"summary\"", "\"\\ud800\"", 1),
            format!("{AM_025} "),
            format!("{AM_025} {{}}"),
        ];
        for body in bodies {
            assert_eq!(
                Envelope::parse(body.as_bytes()).is_ok(),
                serde_json::from_str::<Payload>(&body).is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn bad_payloads_name_the_problem() {
        for (body, needle) in [
            ("{", "invalid JSON"),
            (r#"{"version":"4"}"#, "missing field"),
            (
                &AM_025.replacen("\"status\":\"firing\",\"alerts\"", "\"status\":\"burning\",\"alerts\"", 1),
                "status",
            ),
            (&AM_025.replacen("\"version\":\"4\"", "\"version\":\"3\"", 1), "version"),
        ] {
            let e = Payload::parse(body.as_bytes()).unwrap_err();
            assert!(e.0.contains(needle), "{body}: {e}");
        }
    }
}
