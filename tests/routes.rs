//! `lookout relay routes show|test`: the route table as lookout reads it,
//! and where a notification with given labels goes, as `amtool config
//! routes test` answers for Alertmanager.

mod support;

use support::lookout;

const CONFIG: &str = r#"probe_files: []
relay:
  routes:
    - matchers: ['severity="critical"']
      destinations: [pager, chat]
      continue: true
    - matchers: ['alertname=~"Redis.*"']
      destinations: [chat]
    - matchers: ['team!="web"']
      destinations: [mail]
  destinations:
    - {name: pager, type: log}
    - {name: chat, type: log}
    - {name: mail, type: log}
"#;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lookout.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = lookout().args(["relay", "routes"]).args(args).arg("-c").arg(&cfg).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn routes_test_follows_first_match_and_continue() {
    // Critical and Redis: the first route, then (continue) the second.
    let (code, out, err) = run(&["test", "severity=critical", "alertname=RedisDown"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "pager\nchat\n");
    // Not critical, a Redis alert: the second route only (it does not continue).
    let (code, out, _) = run(&["test", "alertname=RedisDown", "team=web"]);
    assert_eq!((code, out.as_str()), (Some(0), "chat\n"));
    // Another team's other alert: the third.
    let (code, out, _) = run(&["test", "alertname=Disk", "team=db"]);
    assert_eq!((code, out.as_str()), (Some(0), "mail\n"));
    // Nothing matches: exit 1, said on stderr.
    let (code, out, err) = run(&["test", "alertname=Disk", "team=web"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("no route matches"), "{err}");
    // A label that is not LABEL=VALUE is a usage error.
    let (code, _, err) = run(&["test", "severity"]);
    assert_eq!(code, Some(64), "{err}");
}

#[test]
fn routes_show_prints_the_table_in_order() {
    let (code, out, err) = run(&["show"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ROUTE"), "{out}");
    assert!(
        lines[1].contains(r#"severity="critical""#) && lines[1].contains("pager, chat") && lines[1].ends_with("yes"),
        "{out}"
    );
    assert!(lines[2].contains(r#"alertname=~"Redis.*""#) && lines[2].ends_with("no"), "{out}");
    assert!(lines[3].contains(r#"team!="web""#) && lines[3].contains("mail"), "{out}");
}
