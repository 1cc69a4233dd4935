//! Compiles the kernel fast path's eBPF programs with clang into OUT_DIR, where
//! src/offload/loader.rs embeds them: the TC program (src/offload/bpf/relay.bpf.c) and the XDP one
//! (relay_xdp.bpf.c), each its own object, since a relay loads one of them and only the XDP one
//! has (and fills) the next-hop map. A machine without clang or the libbpf headers
//! still builds turn-server: the build warns, sets `offload_unbuilt`, and the loader then says
//! why it cannot load instead of the relay failing to compile.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Each program's source and the object it becomes.
const PROGRAMS: [(&str, &str); 2] =
    [("src/offload/bpf/relay.bpf.c", "relay.bpf.o"), ("src/offload/bpf/relay_xdp.bpf.c", "relay_xdp.bpf.o")];
/// The map layouts and helpers the programs share (#included, so a change must rebuild them).
const SHARED: &str = "src/offload/bpf/relay_maps.h";

fn main() {
    for (source, _) in PROGRAMS {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed={SHARED}");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo::rustc-check-cfg=cfg(offload_unbuilt)");
    if let Err(reason) = PROGRAMS.iter().try_for_each(|(source, object)| compile(source, object)) {
        println!("cargo:warning=the kernel fast path (offload) is not built: {reason}");
        println!("cargo:rustc-cfg=offload_unbuilt");
        println!("cargo:rustc-env=TURN_OFFLOAD_UNBUILT={reason}");
    }
}

fn compile(source: &str, object: &str) -> Result<(), String> {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return Err("eBPF offload exists only on Linux".into());
    }
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let object = out.join(object);
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall"]);
    // The uapi headers' <asm/...> live under the multiarch directory on Debian.
    if let Some(dir) = multiarch_include() {
        cmd.arg(format!("-I{dir}"));
    }
    cmd.arg("-c").arg(source).arg("-o").arg(&object);
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("clang was not found when turn-server was built".into());
        }
        Err(e) => return Err(format!("running {clang} failed: {e}")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| l.contains("error")).unwrap_or("no message");
        return Err(format!(
            "clang could not compile {source} (are libbpf-dev and the kernel headers installed?): {first}"
        ));
    }
    Ok(())
}

/// `/usr/include/<multiarch>` for the build host, e.g. x86_64-linux-gnu.
fn multiarch_include() -> Option<String> {
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").ok()?.as_str() {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "riscv64" => "riscv64",
        "powerpc64" => "powerpc64le",
        "s390x" => "s390x",
        _ => return None,
    };
    let dir = format!("/usr/include/{arch}-linux-gnu");
    std::path::Path::new(&dir).is_dir().then_some(dir)
}
