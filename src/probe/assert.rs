//! `assert:` conditions on canonical metrics, such as `hit_ratio >= 0.8`.
//!
//! Parsed once when configuration loads (a bad condition is a configuration
//! error with its line), evaluated after every successful read. A failed
//! condition reports the value it saw, as Gatus users expect.

use std::fmt;
use std::str::FromStr;

use crate::metric::Metric;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// `metric op number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    /// Left-hand side.
    pub metric: Metric,
    /// Comparison.
    pub op: Op,
    /// Right-hand side, in the metric's base unit.
    pub threshold: f64,
}

impl Assertion {
    /// Whether `value` satisfies the condition.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Lt => value < self.threshold,
            Op::Le => value <= self.threshold,
            Op::Gt => value > self.threshold,
            Op::Ge => value >= self.threshold,
            Op::Eq => value == self.threshold,
            Op::Ne => value != self.threshold,
        }
    }
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.as_str(), self.threshold)
    }
}

impl FromStr for Assertion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Longest operators first so `<=` is not read as `<`.
        const OPS: [(&str, Op); 6] = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (pos, text, op) = OPS
            .iter()
            .filter_map(|(t, op)| s.find(t).map(|p| (p, *t, *op)))
            .min_by_key(|(p, t, _)| (*p, usize::MAX - t.len()))
            .ok_or_else(|| format!("invalid condition `{s}`: expected `<metric> <op> <number>` with op one of <, <=, >, >=, ==, !="))?;
        // The whole run of operator characters around the match: `=>` or
        // `=<` is a typo to name, not a metric called `hit_ratio =`.
        let is_op = |c: char| matches!(c, '<' | '>' | '=' | '!');
        let start = s[..pos].trim_end_matches(is_op).len();
        let end = pos + text.len() + (s[pos + text.len()..].len() - s[pos + text.len()..].trim_start_matches(is_op).len());
        let token = &s[start..end];
        if token != text {
            return Err(format!(
                "invalid condition `{s}`: unknown operator `{token}` (use one of <, <=, >, >=, ==, !=)"
            ));
        }
        let left = s[..pos].trim();
        let right = s[pos + text.len()..].trim();
        let metric: Metric = left.parse().map_err(|e| format!("invalid condition `{s}`: {e}"))?;
        let threshold: f64 = right
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("invalid condition `{s}`: `{right}` is not a number"))?;
        Ok(Assertion { metric, op, threshold })
    }
}

impl schemars::JsonSchema for Assertion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Assertion".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`metric op number`, e.g. `latency_seconds < 0.05`; op one of <, <=, >, >=, ==, !=.",
            "pattern": "^\\s*[a-z_]+\\s*(<=|>=|==|!=|<|>)\\s*\\S+\\s*$"
        })
    }
}

impl<'de> serde::Deserialize<'de> for Assertion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let a: Assertion = "hit_ratio >= 0.8".parse().unwrap();
        assert_eq!(a.op, Op::Ge);
        assert!(a.holds(0.8) && !a.holds(0.79));
        let b: Assertion = "latency_seconds<0.05".parse().unwrap();
        assert_eq!(b.op, Op::Lt);
        assert!(b.holds(0.01));
        assert!("hit_rate > 1".parse::<Assertion>().is_err());
        assert!("hit_ratio > x".parse::<Assertion>().is_err());
        assert!("hit_ratio".parse::<Assertion>().is_err());
        let e = "hit_ratio => 0.8".parse::<Assertion>().unwrap_err();
        assert!(e.contains("unknown operator `=>`"), "{e}");
        assert!("hit_ratio =< 0.8".parse::<Assertion>().unwrap_err().contains("`=<`"));
    }
}
