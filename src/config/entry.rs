//! One mapping of the configuration whose keys belong to several owners.
//!
//! A probe is written as one flat mapping: the envelope's keys (`name`,
//! `kind`, `every`…) beside its kind's own keys (`url`, `selector`…); a relay
//! destination likewise beside its `type`. The envelope is the configuration
//! module's; each kind's keys are that kind's module's. So the mapping is
//! first read as an [`Entry`], every key with the place it was written, and
//! each owner then [`take`](Entry::take)s its own keys into its own typed
//! struct (strict, `deny_unknown_fields`). A problem in any value is reported
//! at that value's own line and column; a key nobody took is reported with
//! the closest valid key, or with the kind it belongs to.
//!
//! Why not a serde enum tagged by `kind`: serde buffers a tagged enum's keys
//! before choosing the variant, and every line number is lost on the way.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_saphyr::Spanned;

use super::{Problem, closest};

/// A mapping as written: each key with its value and where the value is.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    keys: BTreeMap<String, Spanned<serde_json::Value>>,
    /// Line where the mapping starts (its first key).
    pub line: u64,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<BTreeMap<String, Spanned<serde_json::Value>>>::deserialize(d)?;
        Ok(Entry {
            line: s.referenced.line(),
            keys: s.value,
        })
    }
}

/// The place of a problem inside one entry, and where problems go.
pub struct Scope<'a> {
    /// The file the entry is in.
    pub file: &'a Path,
    /// Prefix of field names in messages (`relay.destinations.` …), may be empty.
    pub prefix: String,
    lines: BTreeMap<String, (u64, u64)>,
    line: u64,
    /// Problems found so far.
    pub problems: &'a mut Vec<Problem>,
}

impl Scope<'_> {
    /// Records a problem with `field` (a key of the entry, or a dotted path
    /// starting with one), at that key's line.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        let key = field.split(['.', '[']).next().unwrap_or(field);
        let (line, column) = match self.lines.get(key) {
            Some(&(l, c)) => (l, Some(c)),
            None => (self.line, None),
        };
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: Some(line),
            column,
            field: Some(format!("{}{field}", self.prefix)),
            message: message.into(),
        });
    }

    /// Problems recorded so far (to tell whether a step added any).
    pub fn count(&self) -> usize {
        self.problems.len()
    }

    /// Line of the entry (its first key).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Line of `key`'s value, or of the entry when it has no such key.
    pub fn line_of(&self, key: &str) -> u64 {
        self.lines.get(key).map_or(self.line, |&(l, _)| l)
    }
}

impl Entry {
    /// A scope for reporting problems of this entry.
    pub fn scope<'a>(&self, file: &'a Path, prefix: impl Into<String>, problems: &'a mut Vec<Problem>) -> Scope<'a> {
        Scope {
            file,
            prefix: prefix.into(),
            lines: self
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), (v.referenced.line(), v.referenced.column())))
                .collect(),
            line: self.line,
            problems,
        }
    }

    /// Whether the entry has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// The keys not taken yet, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Takes the keys `T` declares out of the entry and deserializes them
    /// into `T`. A value of the wrong shape is reported at its own line, with
    /// its path (`fields.hit_ratio.pointer`); `None` when there was one.
    pub fn take<T: DeserializeOwned>(&mut self, scope: &mut Scope<'_>) -> Option<T> {
        let names = fields_of::<T>();
        let mut map = serde_json::Map::new();
        for name in names {
            if let Some(v) = self.keys.remove(*name) {
                map.insert((*name).to_string(), v.value);
            }
        }
        match serde_path_to_error::deserialize::<_, T>(serde_json::Value::Object(map)) {
            Ok(t) => Some(t),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                if path == "." || path.is_empty() {
                    // A missing required key: serde names it in the message.
                    let field = message
                        .strip_prefix("missing field `")
                        .and_then(|m| m.strip_suffix('`'))
                        .map(str::to_owned);
                    match field {
                        Some(f) => scope.error(&f, "missing required field"),
                        None => scope.error("", message),
                    }
                } else {
                    scope.error(&path, message);
                }
                None
            }
        }
    }

    /// Reports every key nobody took: with the closest valid key, or with
    /// the other kinds that have it (`others`: kind name and its keys).
    pub fn reject_rest(&self, scope: &mut Scope<'_>, valid: &[&str], kind_word: &str, kind: &str, others: &[(&str, &[&str])]) {
        for key in self.keys.keys() {
            let owners: Vec<&str> = others
                .iter()
                .filter(|(k, fields)| *k != kind && fields.contains(&key.as_str()))
                .map(|(k, _)| *k)
                .collect();
            if !owners.is_empty() {
                let list = owners.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                scope.error(
                    key,
                    format!("not a field of {kind_word} `{kind}` (it belongs to {kind_word} {list})"),
                );
                continue;
            }
            let hint = closest(key, valid).map(|s| format!(" — did you mean `{s}`?")).unwrap_or_default();
            scope.error(key, format!("unknown key{hint} (valid keys here: {})", valid.join(", ")));
        }
    }
}

/// The keys a `Deserialize` struct declares (as renamed), read from what its
/// derived code passes to `deserialize_struct`.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Common {
        name: String,
        #[serde(default)]
        every: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Kind {
        #[serde(rename = "url")]
        _url: Option<String>,
        #[serde(default, rename = "port")]
        _port: Option<u16>,
    }

    #[test]
    fn fields_are_read_from_the_derive() {
        assert_eq!(fields_of::<Common>(), &["name", "every"]);
        assert_eq!(fields_of::<Kind>(), &["url", "port"]);
    }

    #[test]
    fn each_owner_takes_its_keys_and_problems_are_located() {
        let text = "name: a\nevery: 3\nurl: x\nport: 99999\nprot: 1\n";
        let mut e: Entry = serde_saphyr::from_str(text).unwrap();
        let file = Path::new("t.yaml");
        let mut problems = Vec::new();
        let mut s = e.scope(file, "", &mut problems);
        let c: Common = e.take(&mut s).unwrap();
        assert_eq!((c.name.as_str(), c.every), ("a", Some(3)));
        assert!(e.take::<Kind>(&mut s).is_none());
        e.reject_rest(&mut s, &["name", "every", "url", "port"], "kind", "k", &[]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!((problems[0].line, problems[0].field.as_deref()), (Some(4), Some("port")));
        assert_eq!((problems[1].line, problems[1].field.as_deref()), (Some(5), Some("prot")));
        assert!(problems[1].message.contains("did you mean `port`"), "{}", problems[1].message);
    }

    #[test]
    fn missing_key_is_named() {
        let mut e: Entry = serde_saphyr::from_str("every: 3\n").unwrap();
        let mut problems = Vec::new();
        let mut s = e.scope(Path::new("t.yaml"), "", &mut problems);
        assert!(e.take::<Common>(&mut s).is_none());
        assert_eq!(problems[0].field.as_deref(), Some("name"));
    }
}
