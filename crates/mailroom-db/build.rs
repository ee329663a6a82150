//! Rebuild when a migration is added: `sqlx::migrate!` embeds the directory at compile time, and
//! cargo does not otherwise know the crate depends on it.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
