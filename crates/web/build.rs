//! Rebuilds the crate when anything under `web-admin/` changes: the embed macro names only the
//! files that existed when it last ran, so a new file would otherwise go unnoticed.
fn main() {
    println!("cargo:rerun-if-changed=../../web-admin");
}
