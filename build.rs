//! Records the source revision for `lookout_build_info{revision=…}`:
//! `LOOKOUT_REVISION` when the build sets it (a container build without the
//! Git history), else the checkout's commit, else nothing (`unknown`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LOOKOUT_REVISION");
    if std::env::var_os("LOOKOUT_REVISION").is_some() {
        return;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Rebuild when HEAD moves: a checkout (HEAD) or a new commit (its ref).
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])) {
        println!("cargo:rerun-if-changed={reference}");
    }
    if let Some(rev) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=LOOKOUT_REVISION={rev}");
    }
}
