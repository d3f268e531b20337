//! The mock's certificate chain is accepted only by a client built with
//! `whatsapp-rust`'s `danger-skip-cert-chain-verify` feature. These tests read the
//! resolved dependency graph with `cargo tree` and show that the feature reaches the
//! gateway only through dev-dependencies: a release build (normal edges only, of the
//! gateway alone or of the whole workspace) does not contain it, nor the HTTP
//! client's TLS bypass the media tests use.

use std::process::Command;

const FEATURE: &str = "danger-skip-cert-chain-verify";

/// `cargo tree` with `args`, from the workspace root, as text.
fn cargo_tree(args: &[&str]) -> String {
    cargo_tree_of("wacore-noise", args)
}

/// `cargo tree` of what depends on `package`, with `args`, as text.
fn cargo_tree_of(package: &str, args: &[&str]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let output = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["tree", "--locked", "-f", "{p} {f}", "-i", package])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_gateway_release_build_has_no_certificate_bypass() {
    let normal = cargo_tree(&["-p", "abtrack-wa-gateway", "-e", "normal"]);
    assert!(normal.contains("abtrack-wa-gateway"), "{normal}");
    assert!(!normal.contains(FEATURE), "{normal}");

    let workspace = cargo_tree(&["--workspace", "-e", "normal"]);
    assert!(workspace.contains("abtrack-wa-gateway"), "{workspace}");
    assert!(!workspace.contains(FEATURE), "{workspace}");
}

/// The mock's media host has a self-made certificate too: the media tests' HTTP
/// client skips TLS verification, and no release build may.
#[test]
fn no_release_build_skips_tls_verification_for_media() {
    let normal = cargo_tree_of(
        "whatsapp-rust-ureq-http-client",
        &["--workspace", "-e", "normal"],
    );
    assert!(normal.contains("abtrack-wa-gateway"), "{normal}");
    assert!(!normal.contains("danger-skip-tls-verify"), "{normal}");
}

#[test]
fn the_gateway_test_build_gets_the_bypass_through_dev_dependencies_only() {
    let with_dev = cargo_tree(&["-p", "abtrack-wa-gateway", "-e", "normal,dev"]);
    let line = with_dev
        .lines()
        .find(|l| l.starts_with("wacore-noise"))
        .unwrap_or_default();
    assert!(line.contains(FEATURE), "{with_dev}");
    assert!(with_dev.contains("[dev-dependencies]"), "{with_dev}");
}

#[test]
fn only_the_gateway_s_mock_server_feature_brings_the_bypass_into_a_normal_build() {
    let with = cargo_tree(&[
        "-p",
        "abtrack-wa-gateway",
        "-e",
        "normal",
        "--features",
        "abtrack-wa-gateway/mock-server",
    ]);
    let line = with
        .lines()
        .find(|l| l.starts_with("wacore-noise"))
        .unwrap_or_default();
    assert!(line.contains(FEATURE), "{with}");

    // No release build asks for it: the archives, the image and start.sh build the
    // four services with their default features.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    for file in [
        ".github/workflows/release.yml",
        "Dockerfile",
        "start.sh",
        "start.bat",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for flag in ["mock-server", "--all-features", "--features"] {
            assert!(!text.contains(flag), "{file} mentions {flag}");
        }
        assert!(!text.contains("wa-mock"), "{file} builds or ships wa-mock");
    }
}
