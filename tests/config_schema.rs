//! `lookout config schema`: the shipped configurations validate against it,
//! a wrong one does not, and the README's configuration reference names
//! every key it has. The schema is checked by an independent validator
//! (Python's `jsonschema`, draft 2020-12), not by lookout's own loader.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::{lookout, root, venv_python};

fn schema() -> Value {
    let out = lookout().args(["config", "schema"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A YAML file as the loader reads it (`${VAR:-default}` expanded with an
/// empty environment), as JSON.
fn instance(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let expanded = lookout::config::expand(&text, |_: &str| None).unwrap();
    serde_saphyr::from_str(&expanded).unwrap()
}

/// The validator's complaints about each instance, in order (empty: valid).
fn validate(schema: &Value, instances: &[Value]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("schema.json");
    let i = dir.path().join("instances.json");
    std::fs::write(&s, schema.to_string()).unwrap();
    std::fs::write(&i, Value::Array(instances.to_vec()).to_string()).unwrap();
    let script = "import json, sys, jsonschema\n\
        s = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(s)\n\
        v = jsonschema.Draft202012Validator(s)\n\
        print(json.dumps([[f'{list(e.absolute_path)}: {e.message}' for e in v.iter_errors(x)] for x in json.load(open(sys.argv[2]))]))\n";
    let out = std::process::Command::new(venv_python())
        .args(["-c", script])
        .arg(&s)
        .arg(&i)
        .output()
        .unwrap();
    assert!(out.status.success(), "validator: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_shipped_schema_file_is_current() {
    let shipped = std::fs::read_to_string(root().join("config/lookout.schema.json")).unwrap();
    let shipped: Value = serde_json::from_str(&shipped).unwrap();
    assert!(
        shipped == schema(),
        "config/lookout.schema.json is out of date: run `lookout config schema > config/lookout.schema.json`"
    );
}

#[test]
fn shipped_configurations_validate_and_wrong_ones_do_not() {
    let schema = schema();
    let root = root();
    let mut names = Vec::new();
    let mut instances = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("config/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.push(root.join("config/lookout.yaml"));
    files.sort();
    for f in &files {
        names.push(f.display().to_string());
        instances.push(instance(f));
    }
    // Each probe file holds one probe: it must be a valid item of `probes`.
    let mut probe_files: Vec<_> = std::fs::read_dir(root.join("probes")).unwrap().map(|e| e.unwrap().path()).collect();
    probe_files.sort();
    for f in &probe_files {
        names.push(f.display().to_string());
        instances.push(serde_json::json!({ "probes": [instance(f)] }));
    }
    assert!(files.len() >= 3 && !probe_files.is_empty(), "{names:?}");
    let results = validate(&schema, &instances);
    for (name, errors) in names.iter().zip(&results) {
        assert!(errors.is_empty(), "{name} does not validate: {errors:?}");
    }

    // What the loader rejects, the schema rejects too.
    let wrong = [
        serde_json::json!({"probes": [{"name": "r", "kind": "redis", "tmeout": "5s"}]}),
        serde_json::json!({"probes": [{"name": "r", "kind": "redis", "selector": "{}"}]}),
        serde_json::json!({"probes": [{"name": "r", "kind": "nope"}]}),
        serde_json::json!({"relay": {"destinations": [{"name": "d", "type": "webhook", "channel": "#x"}]}}),
        serde_json::json!({"server": {"listen": "127.0.0.1:1", "extra": 1}}),
    ];
    let results = validate(&schema, &wrong);
    for (w, errors) in wrong.iter().zip(&results) {
        assert!(!errors.is_empty(), "accepted by the schema: {w}");
    }
}

/// Every key the schema has, anywhere.
fn keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                out.extend(props.keys().cloned());
            }
            m.values().for_each(|x| keys(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn the_readme_names_every_configuration_key() {
    let mut all = BTreeSet::new();
    keys(&schema(), &mut all);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("\n## Configuration").expect("a Configuration section");
    let reference = &readme[start..];
    // Named: in backquotes (`key`, `section.key`, `key.sub`, `key: value`) or as a
    // key of a YAML example.
    let named = |k: &str| {
        reference.contains(&format!("`{k}`"))
            || reference.contains(&format!(".{k}`"))
            || reference.contains(&format!("`{k}:"))
            || reference.contains(&format!("`{k}."))
            || reference.contains(&format!(".{k}."))
            || reference.lines().any(|l| {
                let t = l.trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{k}:"))
            })
    };
    let missing: Vec<&String> = all.iter().filter(|k| !named(k)).collect();
    assert!(all.len() > 60, "{all:?}");
    assert!(
        missing.is_empty(),
        "keys of the schema the README's configuration reference never names: {missing:?}"
    );
}
