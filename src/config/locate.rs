//! Where a field is written: the line and column of a dotted path
//! (`relay.routes[0].destinations`, `scheduler.max_concurrency`) in a YAML
//! document, block or flow style.
//!
//! Most problems are found while a value is parsed, where the parser knows
//! its place. Some are only found when values are compared with each other
//! (a route naming a destination that does not exist, a reference that is
//! not a Redis probe); this finds the field they are about, so that every
//! problem names a line.

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML node with the place of each child.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Key, Spanned<Node>>()? {
                    out.push((k.0, v));
                }
                Ok(Node::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Spanned<Node>>()? {
                    out.push(v);
                }
                Ok(Node::Seq(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key of any scalar type, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The line and column of the deepest part of `path` written in `src`
/// (`a.b[2].c`; a part not written stops the walk at its parent). `None`
/// when the text does not parse or the first part is not there.
pub fn locate(src: &str, path: &str) -> Option<(u64, u64)> {
    let root: Spanned<Node> = serde_saphyr::from_str(src).ok()?;
    let mut node = &root;
    let mut found = None;
    for part in split(path) {
        let next = match (&node.value, part) {
            (Node::Map(m), Part::Key(k)) => m.iter().find(|(name, _)| name == k).map(|(_, v)| v),
            (Node::Seq(s), Part::Index(i)) => s.get(i),
            _ => None,
        };
        match next {
            Some(n) => {
                found = Some((n.referenced.line(), n.referenced.column()));
                node = n;
            }
            None => break,
        }
    }
    found
}

enum Part<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → `a`, `b`, `[2]`, `c`.
fn split(path: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    for seg in path.split('.') {
        let (name, rest) = seg.split_once('[').map_or((seg, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Part::Key(name));
        }
        for idx in rest.split('[') {
            if let Some(n) = idx.trim_end_matches(']').parse().ok().filter(|_| !idx.is_empty()) {
                out.push(Part::Index(n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_flow_paths() {
        let src = "scheduler:\n  spread: true\n  max_concurrency: 0\nrelay:\n  routes:\n    - destinations: [a]\n    - {matchers: [], destinations: []}\n";
        assert_eq!(locate(src, "scheduler.max_concurrency").map(|l| l.0), Some(3));
        assert_eq!(locate(src, "relay.routes[0].destinations").map(|l| l.0), Some(6));
        assert_eq!(locate(src, "relay.routes[1].destinations"), Some((7, 36)));
        // A part not written: its parent's place.
        assert_eq!(locate(src, "relay.routes[1].continue").map(|l| l.0), Some(7));
        assert_eq!(locate(src, "nothing"), None);
    }
}
