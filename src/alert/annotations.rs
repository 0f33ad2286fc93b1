//! Annotation rendering: each rule's `summary`, `description` and other
//! annotation templates (minijinja), compiled once per configuration rather
//! than on every render — rules are evaluated every few seconds for every
//! probe, and the templates only change on a reload.
//!
//! Templates see `value`, `probe`, `threshold` and the condition's extra
//! variables (`error`, `cause`). An undefined variable renders empty, and a
//! template that fails leaves its source text as the annotation: a wrong
//! annotation must not keep an alert from going out.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::rules::Condition;
use crate::config::alerts::{Rule, RuleName};

/// One annotation of one rule.
struct Annotation {
    /// The annotation's key (`summary`, …).
    key: String,
    /// The template's name in the environment; `None` when it did not
    /// compile (configuration validation rejects that for user templates,
    /// so this is a safety net).
    template: Option<String>,
    /// The source, rendered as is when the template cannot be.
    source: String,
}

/// The compiled annotation templates of a set of rules.
pub struct Annotations {
    env: Environment<'static>,
    rules: BTreeMap<RuleName, Vec<Annotation>>,
}

impl Annotations {
    /// Compiles the annotation templates of `rules`.
    pub fn new(rules: &[Rule]) -> Annotations {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        let mut compiled = BTreeMap::new();
        for rule in rules {
            let list = rule
                .annotations
                .iter()
                .map(|(key, source)| {
                    let name = format!("{}/{key}", rule.name);
                    let template = match env.add_template_owned(name.clone(), source.clone()) {
                        Ok(()) => Some(name),
                        Err(e) => {
                            tracing::warn!(alert = %rule.name, annotation = %key, error = %e, "Annotation template does not compile; its text is used as is");
                            None
                        }
                    };
                    Annotation {
                        key: key.clone(),
                        template,
                        source: source.clone(),
                    }
                })
                .collect();
            compiled.insert(rule.name, list);
        }
        Annotations { env, rules: compiled }
    }

    /// Whether these templates were compiled from exactly the annotations
    /// of `rules` (false after a reload that changed any of them).
    pub fn compiled_from(&self, rules: &[Rule]) -> bool {
        self.rules.len() == rules.len()
            && rules.iter().all(|r| {
                self.rules.get(&r.name).is_some_and(|list| {
                    list.len() == r.annotations.len() && list.iter().zip(&r.annotations).all(|(a, (k, s))| a.key == *k && a.source == *s)
                })
            })
    }

    /// The annotations of `rule` for condition `c`.
    pub fn render(&self, rule: &Rule, c: &Condition) -> BTreeMap<String, String> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        ctx.insert("value".into(), c.value.into());
        ctx.insert("probe".into(), c.probe.clone().into());
        ctx.insert("threshold".into(), rule.threshold.into());
        for (k, v) in &c.extra {
            ctx.insert(k.clone(), v.clone().into());
        }
        let Some(list) = self.rules.get(&rule.name) else {
            return BTreeMap::new();
        };
        list.iter()
            .map(|a| {
                let text = a
                    .template
                    .as_deref()
                    .and_then(|name| self.env.get_template(name).ok())
                    .and_then(|t| t.render(&ctx).ok())
                    .unwrap_or_else(|| a.source.clone());
                (a.key.clone(), text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerts::build;

    fn rules() -> Vec<Rule> {
        build(None).ok().flatten().map(|c| c.rules).unwrap_or_default()
    }

    fn condition(probe: &str, value: f64, error: &str) -> Condition {
        Condition {
            key: probe.into(),
            probe: probe.into(),
            active: true,
            checked_at: 1.0,
            value,
            extra: [("error".to_string(), error.to_string())].into(),
        }
    }

    #[test]
    fn renders_the_built_in_annotations() {
        let rules = rules();
        let a = Annotations::new(&rules);
        let rule = |name| rules.iter().find(|r| r.name == name).expect("a built-in rule");
        let out = a.render(rule(RuleName::HealthEndpointDown), &condition("web", 1.0, "HTTP 503"));
        assert_eq!(out["summary"], "Health endpoint web is down");
        assert_eq!(out["description"], "web fails: HTTP 503");
        let out = a.render(rule(RuleName::RedisConnectionExhaustion), &condition("cache", 0.9, ""));
        assert_eq!(out["description"], "connected_clients is 90.0% of maxclients (threshold 85.0%)");
        // A count reads as one.
        let out = a.render(
            rule(RuleName::CrossCheckMismatch),
            &condition("web", 2.0, "maxclients, used_memory_bytes"),
        );
        assert_eq!(
            out["description"],
            "2 metric(s) disagree with the reference: maxclients, used_memory_bytes"
        );
    }

    #[test]
    fn a_template_that_fails_leaves_its_text_and_an_undefined_variable_is_empty() {
        let mut rules = rules();
        rules.truncate(1);
        rules[0].annotations = [
            ("broken".to_string(), "{{ value | no_such_filter }}".to_string()),
            ("unclosed".to_string(), "{{ probe".to_string()),
            ("unknown".to_string(), "[{{ nothing }}]".to_string()),
        ]
        .into();
        let a = Annotations::new(&rules);
        let out = a.render(&rules[0], &condition("web", 1.0, ""));
        assert_eq!(out["broken"], "{{ value | no_such_filter }}");
        assert_eq!(out["unclosed"], "{{ probe");
        assert_eq!(out["unknown"], "[]");
    }

    #[test]
    fn knows_when_a_reload_changed_the_templates() {
        let mut rules = rules();
        let a = Annotations::new(&rules);
        assert!(a.compiled_from(&rules));
        rules[0].annotations.insert("summary".into(), "changed".into());
        assert!(!a.compiled_from(&rules));
        rules.pop();
        assert!(!Annotations::new(&rules).compiled_from(&self::rules()));
    }
}
