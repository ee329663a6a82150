//! The dependency policy of `deny.toml` (cargo-deny's format), checked without cargo-deny:
//! every crate in the build has a licence the policy allows, and every crate that is in the
//! build twice is a duplicate the policy lists (and every listed duplicate still exists). The
//! graph comes from `cargo metadata` for the policy's target, normal and build dependencies of
//! the workspace members only (test-only crates are not shipped).

use std::collections::{BTreeMap, BTreeSet};

use mailroom_tests::repo_root;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Policy {
    graph: Graph,
    licenses: Licenses,
    bans: Bans,
}

#[derive(Debug, Deserialize)]
struct Graph {
    targets: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Licenses {
    allow: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
struct Bans {
    skip: Vec<Skip>,
}

#[derive(Debug, Deserialize)]
struct Skip {
    #[serde(rename = "crate")]
    krate: String,
    reason: String,
}

fn policy() -> Policy {
    let text = std::fs::read_to_string(repo_root().join("deny.toml")).expect("deny.toml");
    toml::from_str(&text).expect("deny.toml parses")
}

/// `name@version` → licence expression of every crate the workspace builds for `target`.
fn shipped_crates(target: &str) -> BTreeMap<String, Option<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--filter-platform", target])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages: BTreeMap<&str, &Value> =
        meta["packages"].as_array().expect("packages").iter().map(|p| (p["id"].as_str().expect("id"), p)).collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let members: BTreeSet<&str> =
        meta["workspace_members"].as_array().expect("members").iter().filter_map(Value::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = members.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let shipped =
                dep["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].is_null() || k["kind"] == "build");
            if shipped {
                stack.push(dep["pkg"].as_str().expect("pkg"));
            }
        }
    }
    seen.iter()
        .filter(|id| !members.contains(*id))
        .map(|id| {
            let p = packages[id];
            let key = format!("{}@{}", p["name"].as_str().expect("name"), p["version"].as_str().expect("version"));
            (key, p["license"].as_str().map(str::to_owned))
        })
        .collect()
}

/// Whether an SPDX expression (`A OR B`, `A AND (B OR C)`, `A WITH exception`, the legacy
/// `A/B`) can be satisfied with licences from `allow`.
fn allowed(expression: &str, allow: &BTreeSet<String>) -> bool {
    let spaced = expression.replace('(', " ( ").replace(')', " ) ").replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut at = 0;
    let ok = any_of(&tokens, &mut at, allow);
    ok && at == tokens.len()
}

fn any_of(tokens: &[&str], at: &mut usize, allow: &BTreeSet<String>) -> bool {
    let mut ok = all_of(tokens, at, allow);
    while tokens.get(*at) == Some(&"OR") {
        *at += 1;
        ok |= all_of(tokens, at, allow);
    }
    ok
}

fn all_of(tokens: &[&str], at: &mut usize, allow: &BTreeSet<String>) -> bool {
    let mut ok = one(tokens, at, allow);
    while tokens.get(*at) == Some(&"AND") {
        *at += 1;
        ok &= one(tokens, at, allow);
    }
    ok
}

fn one(tokens: &[&str], at: &mut usize, allow: &BTreeSet<String>) -> bool {
    match tokens.get(*at) {
        Some(&"(") => {
            *at += 1;
            let ok = any_of(tokens, at, allow);
            if tokens.get(*at) == Some(&")") {
                *at += 1;
                ok
            } else {
                false
            }
        }
        Some(id) => {
            *at += 1;
            if tokens.get(*at) == Some(&"WITH") {
                *at += 2; // an exception only widens what the licence permits
            }
            allow.contains(*id)
        }
        None => false,
    }
}

#[test]
fn licence_expressions_are_read_as_spdx() {
    let allow: BTreeSet<String> = ["MIT", "Apache-2.0"].map(str::to_owned).into();
    assert!(allowed("MIT OR GPL-3.0", &allow));
    assert!(allowed("Apache-2.0/MIT", &allow));
    assert!(allowed("(MIT OR Apache-2.0) AND Apache-2.0", &allow));
    assert!(allowed("Apache-2.0 WITH LLVM-exception", &allow));
    assert!(!allowed("MIT AND GPL-3.0", &allow));
    assert!(!allowed("GPL-2.0-only", &allow));
    assert!(!allowed("(MIT", &allow));
}

#[test]
fn every_shipped_crate_has_an_allowed_licence_and_only_listed_duplicates() {
    let policy = policy();
    let mut refused = Vec::new();
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for target in &policy.graph.targets {
        for (krate, licence) in shipped_crates(target) {
            match &licence {
                Some(expr) if allowed(expr, &policy.licenses.allow) => {}
                _ => refused.push(format!("{krate}: {licence:?}")),
            }
            let (name, version) = krate.split_once('@').expect("name@version");
            versions.entry(name.to_owned()).or_default().insert(version.to_owned());
        }
    }
    assert!(refused.is_empty(), "licences outside deny.toml's [licenses] allow: {refused:#?}");
    assert!(versions.len() > 100, "the graph was read: {} crates", versions.len());

    let listed: BTreeSet<&str> = policy.bans.skip.iter().map(|s| s.krate.as_str()).collect();
    assert!(policy.bans.skip.iter().all(|s| !s.reason.trim().is_empty()), "every accepted duplicate says why");
    let mut unlisted = Vec::new();
    for (name, vs) in versions.iter().filter(|(_, vs)| vs.len() > 1) {
        // Every version but one must be listed: the one left is the one the policy keeps.
        let not_listed: Vec<_> = vs.iter().filter(|v| !listed.contains(format!("{name}@{v}").as_str())).collect();
        if not_listed.len() > 1 {
            unlisted.push(format!("{name} {vs:?}"));
        }
    }
    assert!(unlisted.is_empty(), "crates built in several versions, not in deny.toml's [bans] skip: {unlisted:#?}");
    let stale: Vec<_> = listed
        .iter()
        .filter(|k| {
            let (name, version) = k.split_once('@').expect("name@version in skip");
            !versions.get(name).is_some_and(|vs| vs.len() > 1 && vs.contains(version))
        })
        .collect();
    assert!(stale.is_empty(), "deny.toml lists duplicates that are gone; remove them: {stale:?}");
}
