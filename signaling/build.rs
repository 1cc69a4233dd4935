//! Embeds the web client library (`clients/web/src/*.js`) for the `/call` page: the page is
//! built on it and loads it from `/call/lib/<file>`, so the binary carries every module of it as
//! it is in the repository (no build step; the library's own modules import each other by
//! relative path). The list is generated rather than written by hand so a module added to the
//! library cannot be forgotten by the page.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lib = manifest.join("..").join("clients").join("web").join("src");
    // Watching the directory reruns this when a file is added or removed; a missing directory
    // keeps the script rerunning until the library appears.
    println!("cargo:rerun-if-changed={}", lib.display());
    let mut files: Vec<(String, PathBuf)> = match std::fs::read_dir(&lib) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "js"))
            .filter_map(|p| Some((p.file_name()?.to_str()?.to_owned(), p)))
            .collect(),
        Err(e) => {
            println!("cargo:warning=the /call page's library {} is missing ({e})", lib.display());
            Vec::new()
        }
    };
    files.sort();
    let mut out =
        String::from("/// `clients/web/src/*.js`: (file name, contents).\npub const LIB: &[(&str, &str)] = &[\n");
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string());
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("call_lib.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("writing {}: {e}", dest.display());
    }
}
