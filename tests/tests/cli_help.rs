//! Every command answers `--help` with its usage and does nothing else, and refuses an
//! unknown option; the binaries name themselves.

use std::path::PathBuf;
use std::process::Command;
use toopher_tests::artifact;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

const SCRIPTS: &[&str] = &[
    "scripts/test",
    "scripts/demo",
    "scripts/bench",
    "scripts/bench-fleet",
    "scripts/fuzz",
    "packaging/build",
    "packaging/check",
];

#[test]
fn scripts_answer_help_and_nothing_else() {
    for script in SCRIPTS {
        for flag in ["--help", "-h"] {
            let out = Command::new(repo().join(script))
                .arg(flag)
                // Anything beyond printing the usage would need cargo: make it fail.
                .env("PATH", "/usr/bin:/bin")
                .env("CARGO_TARGET_DIR", "/nonexistent/toopher-help-test")
                .output()
                .expect(script);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{script} {flag} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.lines().count() >= 2 && !stdout.contains("#!/"),
                "{script} {flag} printed no usage: {stdout}"
            );
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("==>"),
                "{script} {flag} started work"
            );
        }
    }
}

#[test]
fn scripts_refuse_unknown_options() {
    for script in SCRIPTS {
        let out = Command::new(repo().join(script))
            .arg("--no-such-option")
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect(script);
        assert!(!out.status.success(), "{script} accepted an unknown option");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown option"),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn toopherctl_names_itself_and_accepts_enrol() {
    let ctl = artifact("toopherctl");
    let out = Command::new(&ctl)
        .arg("--version")
        .output()
        .expect("toopherctl");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("toopherctl "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(&ctl)
        .args(["enrol", "--help"])
        .output()
        .expect("toopherctl");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--json"));
    let out = Command::new(artifact("toopherd"))
        .arg("--version")
        .output()
        .expect("toopherd");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("toopherd "));
}

#[test]
fn toopherctl_without_toopherd_says_how_to_start_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(artifact("toopherctl"))
        .arg("--socket")
        .arg(dir.path().join("absent.sock"))
        .arg("status")
        .output()
        .expect("toopherctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("toopherd is not running")
            && stderr.contains("systemctl status toopherd")
            && stderr.contains("systemctl start toopherd"),
        "{stderr}"
    );
}

#[test]
fn toopherd_config_errors_speak_plain_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("toopherd.toml");
    for (text, words) in [
        (
            "[rate_limit]\nmax_failures = \"5\"\n",
            "expected a whole number from 1 to 1000",
        ),
        (
            "[toopher]\nautomation_allowed = \"yes\"\n",
            "expected true or false",
        ),
    ] {
        std::fs::write(&config, text).expect("write config");
        let out = Command::new(artifact("toopherd"))
            .arg("--config")
            .arg(&config)
            .arg("--check-config")
            .output()
            .expect("toopherd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        assert!(
            stderr.contains(words) && stderr.contains("line 2"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("i64") && !stderr.contains("a boolean"),
            "{stderr}"
        );
    }
}

#[test]
fn toopherctl_enroll_offers_a_png() {
    let out = Command::new(artifact("toopherctl"))
        .args(["enroll", "--help"])
        .output()
        .expect("toopherctl");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--qr-file"));
}
