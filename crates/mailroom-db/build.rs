//! Embeds the migrations under `migrations/` (`<version>_<description>.sql`) into the crate:
//! writes `$OUT_DIR/migrations.rs`, a list of `(version, description, include_str!(file))`,
//! sorted by version, that `mailroom_db::MIGRATIONS` is. This is what `sqlx::migrate!` does,
//! without sqlx's proc-macro crate — which would compile sqlx, its PostgreSQL driver and rustls
//! a second time for the build host.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read when the script runs, not baked in when it is compiled: checkouts that share a
    // target directory share this script's binary, and each must read its own migrations.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(i64, String, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        let Some(stem) = name.strip_suffix(".sql") else { continue };
        let (version, description) =
            stem.split_once('_').unwrap_or_else(|| panic!("migration {name} is not <version>_<description>.sql"));
        let version: i64 = version.parse().unwrap_or_else(|e| panic!("migration {name}: version: {e}"));
        println!("cargo:rerun-if-changed={}", path.display());
        // As sqlx::migrate! names them: underscores become spaces.
        files.push((version, description.replace('_', " "), path.canonicalize().expect("canonical path")));
    }
    files.sort();
    let mut out = String::from("/// `(version, description, SQL)` of every migration, by version.\n");
    out.push_str("pub static MIGRATIONS: &[(i64, &str, &str)] = &[\n");
    for (version, description, path) in &files {
        writeln!(out, "    ({version}, {description:?}, include_str!({:?})),", path.display().to_string())
            .expect("write to a String");
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
}
