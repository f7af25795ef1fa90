//! The Go toolchain that `scripts/fetch-test-deps` unpacks, as the tests
//! use it (`support::services::go_command`): a small program with no
//! external modules built offline into a static binary, which then runs.

use crate::support::services::{go_command, go_root};
use crate::support::skip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_builds_a_small_program_offline_and_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut version) = go_command(dir.path()) else {
        skip(
            "go_toolchain::go_builds_a_small_program_offline_and_it_runs",
            &format!(
                "the Go toolchain is not in {}: run scripts/fetch-test-deps",
                go_root().display()
            ),
        );
        return;
    };
    let out = version.arg("version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let reported = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(reported.starts_with("go version go1."), "{reported}");

    std::fs::write(
        dir.path().join("go.mod"),
        "module example.invalid/greeter\n\ngo 1.21\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.go"),
        r#"package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

func main() {
	fmt.Printf("hello %s from %s\n", strings.Join(os.Args[1:], " "), runtime.Version())
}
"#,
    )
    .unwrap();
    let binary = dir.path().join("greeter");
    let mut build = go_command(dir.path()).unwrap();
    build
        .args(["build", "-trimpath", "-o"])
        .arg(&binary)
        .arg(".");
    // A cold build compiles the standard library: minutes on a slow
    // machine, off the async workers.
    let out = tokio::task::spawn_blocking(move || build.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Static (no cgo): it runs with nothing from the environment.
    let out = std::process::Command::new(&binary)
        .env_clear()
        .args(["pockestrator", "tests"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let go_version = reported
        .strip_prefix("go version ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello pockestrator tests from {go_version}\n")
    );
    let elf = std::fs::read(&binary).unwrap();
    assert!(!has_interpreter(&elf), "a static binary asks for no loader");
}

/// Whether a 64-bit little-endian ELF file names a program interpreter
/// (`PT_INTERP`): a dynamically linked program does, a static one not.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(
        &elf[..6],
        b"\x7fELF\x02\x01",
        "a 64-bit little-endian ELF file"
    );
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let program_headers = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = program_headers + i * entry_size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}
