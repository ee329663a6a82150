//! The workspace's binaries as the tests run them, refused when they are older than their
//! sources: a test must not silently exercise yesterday's worker.
//!
//! Freshness is judged the way cargo judges it, without running cargo: next to each binary,
//! cargo writes a dep-info file (`target/<profile>/<name>.d`, Makefile syntax) listing every
//! source file compiled into it (the crate's and its workspace dependencies' sources, and files
//! pulled in by `include_str!` or `sqlx::migrate!`). A binary is stale when one of those files
//! is newer than it, or when its dep-info was written for another checkout. (`Cargo.lock` is
//! not compared: cargo leaves a binary that a change of the lock file does not concern
//! untouched, so comparing with it would refuse binaries that are up to date.)
//! Rebuilding from here (`cargo build --bin`) was the alternative; it was not chosen because
//! every test is a process of its own under nextest, so it would cost a cargo start-up (and a
//! wait on cargo's lock) per test, while these checks stat about a hundred files, once per
//! binary per process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

const BUILD: &str = "run cargo build --workspace --bins --examples";

/// `target/<profile>` of the running test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path of a workspace binary (`cargo build --workspace --bins` builds it).
///
/// # Panics
///
/// When the binary is missing or older than one of its sources (see the [module docs](self)):
/// the message says to run cargo build --workspace --bins --examples.
pub fn bin_path(name: &str) -> PathBuf {
    checked(target_dir().join(name))
}

/// Path of an example binary (`cargo build --workspace --examples` builds it); refused like
/// [`bin_path`] when missing or stale.
pub fn example_path(name: &str) -> PathBuf {
    checked(target_dir().join("examples").join(name))
}

/// `path`, once it is known to exist and be fresh (checked once per process).
fn checked(path: PathBuf) -> PathBuf {
    static FRESH: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let mut fresh = FRESH.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !fresh.contains(&path) {
        if let Some(problem) = staleness(&path) {
            panic!("{} {problem}; {BUILD} first", path.display());
        }
        fresh.insert(path.clone());
    }
    path
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Why the binary at `path` cannot be used, or `None` when it is fresh.
fn staleness(path: &Path) -> Option<String> {
    let Some(built) = modified(path) else { return Some("is not built".to_owned()) };
    let dep_info = path.with_extension("d");
    let Ok(text) = std::fs::read_to_string(&dep_info) else {
        return Some(format!("has no dep-info ({}) to check its freshness by", dep_info.display()));
    };
    let (target, sources) = parse_dep_info(&text)?;
    if Path::new(&target) != path {
        return Some(format!("was built in another checkout ({target})"));
    }
    sources.iter().map(PathBuf::from).find_map(|source| {
        // A source that no longer exists was removed since the build: stale too.
        let newer = modified(&source).is_none_or(|changed| changed > built);
        newer.then(|| format!("is older than {}", source.display()))
    })
}

/// The target and the prerequisites of the first rule of a Makefile-syntax dep-info file
/// (spaces in paths are escaped as `\ `).
fn parse_dep_info(text: &str) -> Option<(String, Vec<String>)> {
    let line = text.lines().next()?;
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            ' ' if !word.is_empty() => words.push(std::mem::take(&mut word)),
            ' ' => {}
            _ => word.push(c),
        }
    }
    words.extend((!word.is_empty()).then_some(word));
    let target = words.first()?.strip_suffix(':')?.to_owned();
    Some((target, words.split_off(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_the_target_and_its_sources() {
        let text = "/t/debug/poller: /r/crates/poller/src/main.rs /r/my\\ dir/a.rs /r/config/default.toml\n\n\
                    /r/crates/poller/src/main.rs:\n";
        let (target, sources) = parse_dep_info(text).expect("parses");
        assert_eq!(target, "/t/debug/poller");
        assert_eq!(sources, ["/r/crates/poller/src/main.rs", "/r/my dir/a.rs", "/r/config/default.toml"]);
    }

    #[test]
    fn a_binary_older_than_a_source_is_stale() {
        let dir = crate::TestDir::create();
        let source = dir.path.join("main.rs");
        let binary = dir.path.join("worker");
        std::fs::write(&binary, "").expect("binary");
        std::fs::write(dir.path.join("worker.d"), format!("{}: {}\n", binary.display(), source.display()))
            .expect("dep-info");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&source, "fn main() {}").expect("source");
        let problem = staleness(&binary).expect("stale");
        assert!(problem.contains("is older than") && problem.contains("main.rs"), "{problem}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&binary, "rebuilt").expect("binary");
        assert_eq!(staleness(&binary), None, "rebuilt after the change");

        std::fs::write(dir.path.join("worker.d"), format!("/elsewhere/worker: {}\n", source.display()))
            .expect("dep-info");
        assert!(staleness(&binary).expect("stale").contains("another checkout"));
        assert_eq!(staleness(&dir.path.join("missing")).as_deref(), Some("is not built"));
    }
}
