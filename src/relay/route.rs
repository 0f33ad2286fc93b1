//! Routes: Alertmanager-style matchers on a notification's common labels.

use std::str::FromStr;

/// `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    op: Op,
    value: String,
    regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl FromStr for Matcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid matcher `{s}`: write name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\"");
        let pos = s.find(['=', '!']).ok_or_else(bad)?;
        let name = s[..pos].trim().to_string();
        let rest = &s[pos..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(bad());
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let v = value.trim();
        let value = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            serde_json::from_str::<String>(v).map_err(|_| bad())?
        } else {
            v.to_string()
        };
        // Alertmanager anchors regexes.
        let regex = match op {
            Op::Re | Op::NotRe => Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("invalid regex in `{s}`: {e}"))?),
            _ => None,
        };
        Ok(Matcher { name, op, value, regex })
    }
}

impl std::fmt::Display for Matcher {
    /// As written in configuration, the value quoted: `severity="critical"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        let quoted = serde_json::to_string(&self.value).map_err(|_| std::fmt::Error)?;
        write!(f, "{}{op}{quoted}", self.name)
    }
}

impl Matcher {
    /// Whether the labels satisfy the matcher (a missing label is "").
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            Op::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// The destinations a notification goes to: the first matching route's,
/// and further routes' while the matched one says `continue`.
pub fn destinations(routes: &[Route], labels: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in routes {
        if r.matchers.iter().all(|m| m.matches(labels)) {
            for d in &r.destinations {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
            if !r.continue_ {
                break;
            }
        }
    }
    out
}

/// A route: which destinations get a notification whose common labels match.
#[derive(Debug, Clone)]
pub struct Route {
    /// All must match; none means every notification.
    pub matchers: Vec<Matcher>,
    /// Destination names.
    pub destinations: Vec<String>,
    /// Keep evaluating the routes after this one matched.
    pub continue_: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matchers() {
        let l = labels(&[("severity", "critical"), ("alertname", "RedisHighMemoryUsage")]);
        for (m, want) in [
            ("severity=\"critical\"", true),
            ("severity!=\"critical\"", false),
            ("alertname=~\"Redis.*\"", true),
            ("alertname=~\"Redis\"", false),
            ("alertname!~\"Lookout.*\"", true),
            ("team=\"\"", true),
        ] {
            assert_eq!(m.parse::<Matcher>().unwrap().matches(&l), want, "{m}");
        }
        assert!("severity".parse::<Matcher>().is_err());
        assert!("a=~\"(\"".parse::<Matcher>().is_err());
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let r = |m: &[&str], d: &[&str], c: bool| Route {
            matchers: m.iter().map(|x| x.parse().unwrap()).collect(),
            destinations: d.iter().map(|x| x.to_string()).collect(),
            continue_: c,
        };
        let routes = vec![
            r(&["severity=\"critical\""], &["pager"], true),
            r(&["severity=\"critical\""], &["slack"], false),
            r(&[], &["log"], false),
        ];
        assert_eq!(destinations(&routes, &labels(&[("severity", "critical")])), ["pager", "slack"]);
        assert_eq!(destinations(&routes, &labels(&[("severity", "warning")])), ["log"]);
    }
}
