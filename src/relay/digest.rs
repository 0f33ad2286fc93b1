//! Coalescing: when a chat or email destination falls behind (its rate
//! limit, an outage), what is queued goes out as one digest rather than as
//! a trickle of messages.
//!
//! A person does not want 400 Slack messages arriving at 1/s for seven
//! minutes; one message saying "400 groups: 380 firing, 20 resolved" with
//! each group's title and links tells them the same at once. So once the
//! oldest queued notification of a destination with `coalesce_after` has
//! waited that long, its dispatcher takes every queued notification (except
//! those of groups with a send in flight, whose order it must keep) and
//! sends one digest: each group once, in its newest state, since every
//! notification carries its group's whole state. Once the digest is
//! accepted the originals are marked `digested` in the outbox; if it is
//! refused nothing is marked, so each is still delivered (alone or in the
//! next digest): at least once, never lost.
//!
//! The dispatcher's side (when to look, sending, marking) is in
//! [`super::worker`]; this module is what a digest is.
//!
//! Only `slack` and `email` make digests: PagerDuty and webhooks are state
//! machines that must see every event, in order.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::outbox::Pending;
use super::payload::Payload;

/// Most notifications one digest takes: a backlog beyond it goes in the
/// next digest, so the memory a digest needs stays bounded.
pub const MAX_NOTIFICATIONS: usize = 2000;
/// Most payload bytes one digest reads (notifications are about 2 KB each;
/// a few carry large annotations).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The template parts that render a digest start with this; they are
/// rendered from a [`Digest`] rather than from one notification.
pub const PART_PREFIX: &str = "digest_";

/// What a digest says: the groups queued, each once in its newest state.
/// The template context of the `digest_*` parts.
#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    /// `[DIGEST] 12 alert groups: 10 firing, 2 resolved`.
    pub subject: String,
    /// The groups, in the order their first queued notification came in.
    pub groups: Vec<Group>,
    /// How many groups.
    pub num_groups: usize,
    /// Groups whose newest state is firing.
    pub num_firing: usize,
    /// Groups whose newest state is resolved.
    pub num_resolved: usize,
    /// Notifications the digest replaces.
    pub num_notifications: usize,
    /// How long the oldest waited (`2m 5s`).
    pub waited: String,
    /// Alertmanager's external URL (of the newest notification).
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The deliveries it replaces.
    #[serde(skip)]
    pub ids: Vec<i64>,
}

/// One group in a digest.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Its subject (`[FIRING:2] RedisDown (cache)`).
    pub title: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The group key.
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// Alerts firing in its newest state.
    pub num_firing: usize,
    /// Alerts resolved in its newest state.
    pub num_resolved: usize,
    /// Its notifications the digest replaces.
    pub notifications: usize,
    /// Runbook, dashboard and source links, the first of each found.
    pub links: Vec<Link>,
}

/// A link of a group.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// `Runbook`, `Dashboard` or `Source`.
    pub name: &'static str,
    /// Where.
    pub url: String,
}

impl Digest {
    /// The digest of `queued` (oldest first), at Unix time `now`; none when
    /// no payload is readable. An unreadable payload is left out, and left
    /// pending: delivered alone, it is dead-lettered with the reason.
    pub fn build(queued: &[Pending], now: f64) -> Option<Digest> {
        let mut order: Vec<String> = Vec::new();
        let mut newest: HashMap<String, (Payload, usize)> = HashMap::new();
        let mut ids = Vec::new();
        let mut oldest = now;
        for p in queued {
            let Ok(payload) = Payload::parse(p.payload.as_bytes()) else {
                continue;
            };
            ids.push(p.id);
            oldest = oldest.min(p.created);
            match newest.get_mut(&p.group_key) {
                // Oldest first: a later one is the newer state.
                Some((prev, n)) => {
                    *prev = payload;
                    *n += 1;
                }
                None => {
                    order.push(p.group_key.clone());
                    newest.insert(p.group_key.clone(), (payload, 1));
                }
            }
        }
        if ids.is_empty() {
            return None;
        }
        let mut external_url = String::new();
        let groups: Vec<Group> = order
            .iter()
            .filter_map(|g| newest.remove(g))
            .map(|(p, notifications)| {
                if !p.external_url.is_empty() {
                    external_url = p.external_url.clone();
                }
                Group {
                    title: p.subject(),
                    status: p.status.clone(),
                    group_key: p.group_key.clone(),
                    num_firing: p.firing().count(),
                    num_resolved: p.resolved().count(),
                    notifications,
                    links: links(&p),
                }
            })
            .collect();
        let num_firing = groups.iter().filter(|g| g.status == "firing").count();
        let num_resolved = groups.len() - num_firing;
        let waited = Duration::from_secs((now - oldest).max(0.0) as u64);
        Some(Digest {
            subject: format!(
                "[DIGEST] {} alert group{}: {num_firing} firing, {num_resolved} resolved",
                groups.len(),
                if groups.len() == 1 { "" } else { "s" }
            ),
            num_groups: groups.len(),
            num_firing,
            num_resolved,
            num_notifications: ids.len(),
            waited: humantime::format_duration(waited).to_string(),
            external_url,
            groups,
            ids,
        })
    }
}

/// The first runbook, dashboard and source link of a notification.
fn links(p: &Payload) -> Vec<Link> {
    let mut out = Vec::new();
    let annotation = |key: &str| {
        p.common_annotations
            .get(key)
            .or_else(|| p.alerts.iter().find_map(|a| a.annotations.get(key)))
            .filter(|u| !u.is_empty())
            .cloned()
    };
    if let Some(u) = annotation("runbook_url") {
        out.push(Link { name: "Runbook", url: u });
    }
    if let Some(u) = annotation("dashboard_url") {
        out.push(Link { name: "Dashboard", url: u });
    }
    if let Some(u) = p.alerts.iter().map(|a| &a.generator_url).find(|u| !u.is_empty()) {
        out.push(Link {
            name: "Source",
            url: u.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: i64, created: f64, p: &Payload) -> Pending {
        Pending {
            id,
            attempts: 0,
            created,
            payload: serde_json::to_string(p).unwrap(),
            group_key: p.group_key.clone(),
        }
    }

    #[test]
    fn each_group_once_in_its_newest_state_in_arrival_order() {
        let a = crate::relay::template::sample();
        let mut a_resolved = a.clone();
        a_resolved.status = "resolved".into();
        let mut b = a.clone();
        b.group_key = "b".into();
        let queued = [
            pending(1, 100.0, &a),
            pending(2, 110.0, &b),
            pending(3, 120.0, &a_resolved),
            Pending {
                payload: "not json".into(),
                ..pending(4, 50.0, &b)
            },
        ];
        let d = Digest::build(&queued, 225.0).unwrap();
        let groups: Vec<(&str, &str, usize)> = d
            .groups
            .iter()
            .map(|g| (g.group_key.as_str(), g.status.as_str(), g.notifications))
            .collect();
        assert_eq!(groups, [(a.group_key.as_str(), "resolved", 2), ("b", "firing", 1)]);
        assert_eq!((d.num_firing, d.num_resolved, d.num_notifications), (1, 1, 3));
        assert_eq!(d.ids, [1, 2, 3], "the unreadable one stays queued");
        assert_eq!(d.waited, "2m 5s");
        assert_eq!(d.subject, "[DIGEST] 2 alert groups: 1 firing, 1 resolved");
        assert_eq!(d.groups[1].links.iter().map(|l| l.name).collect::<Vec<_>>(), ["Runbook", "Source"]);
    }
}
