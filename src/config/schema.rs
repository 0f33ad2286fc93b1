//! JSON Schema pieces the derived ones cannot express: a mapping whose keys
//! belong to two owners (a probe's envelope and its kind's keys; a
//! destination's common keys and its type's), as one object per kind or type,
//! chosen by the value of its tag (`kind:`, `type:`). Editors then complete
//! and check each probe with exactly the keys lookout accepts.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};

/// The object of one variant: the common keys and the variant's own, the
/// tag fixed to `name`, no other key allowed.
pub fn variant<Common: JsonSchema, Own: JsonSchema>(generator: &mut SchemaGenerator, tag: &str, name: &str) -> Value {
    let common = Common::json_schema(generator);
    let own = Own::json_schema(generator);
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    for s in [&common, &own] {
        if let Some(p) = s.get("properties").and_then(Value::as_object) {
            properties.extend(p.clone());
        }
        if let Some(r) = s.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
    }
    let description = properties
        .get(tag)
        .and_then(|t| t.get("description"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut t = Map::new();
    t.insert("const".into(), Value::String(name.into()));
    if !description.is_null() {
        t.insert("description".into(), description);
    }
    properties.insert(tag.into(), Value::Object(t));
    let mut o = Map::new();
    o.insert("type".into(), "object".into());
    o.insert("title".into(), Value::String(format!("{tag}: {name}")));
    o.insert("properties".into(), Value::Object(properties));
    o.insert("required".into(), Value::Array(required));
    o.insert("additionalProperties".into(), Value::Bool(false));
    Value::Object(o)
}

/// A list whose items are one of `variants`.
pub fn list_of(variants: Vec<Value>) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "oneOf": variants }
    })
}

/// The schema of [`super::Secret`]: a string (or an integer, taken as text).
pub fn secret() -> Schema {
    json_schema!({
        "type": ["string", "integer"],
        "description": "A secret: never printed by lookout."
    })
}
