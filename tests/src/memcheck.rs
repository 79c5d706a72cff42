//! One real PAM transaction through `pam-script` under valgrind's memcheck, and what both
//! said about it: the PAM results and the descriptor and thread counts the driver took,
//! and memcheck's error and leak summary.

use crate::pam::Stack;
use std::path::PathBuf;
use std::process::Command;

/// memcheck's exit code when it found an error (a definite leak counts as one).
pub const MEMCHECK_ERROR_EXIT: i32 = 99;

/// How the driver's conversation answers (see `pam-script --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// The answers in order, then PAM_CONV_ERR: the person went away.
    Script,
    /// PAM_SUCCESS without a response array.
    NullReply,
    /// A response array whose texts are null.
    NullText,
}

/// What one run under memcheck showed.
#[derive(Debug)]
pub struct Run {
    /// The process's exit code: the driver's (0 clean, 3 leaked a descriptor or thread),
    /// or [`MEMCHECK_ERROR_EXIT`].
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// memcheck's log.
    pub log: String,
}

impl Run {
    /// A `key=value` line the driver printed.
    pub fn value(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.stdout.lines().find_map(|l| l.strip_prefix(&prefix))
    }

    /// A PAM result the driver printed (`auth`, `setcred`, `acct`); `None` when not run.
    pub fn code(&self, key: &str) -> Option<i32> {
        self.value(key)
            .unwrap_or_else(|| panic!("the driver printed no {key}=:\n{self}"))
            .parse()
            .ok()
    }

    /// The texts of the messages the module showed.
    pub fn messages(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("msg="))
            .collect()
    }

    pub fn shown(&self, needle: &str) -> bool {
        self.messages().iter().any(|m| m.contains(needle))
    }

    /// Asserts memcheck ran the driver to its end and found no error and no definite
    /// leak, and the driver found no descriptor or thread left behind.
    pub fn assert_clean(&self) {
        assert!(
            self.log.contains("Command: ") && self.log.contains("pam-script"),
            "memcheck did not run the driver:\n{self}"
        );
        assert!(
            self.log.contains("ERROR SUMMARY: 0 errors from 0 contexts"),
            "memcheck found errors:\n{self}"
        );
        let no_definite = self.log.contains("definitely lost: 0 bytes in 0 blocks")
            || self.log.contains("All heap blocks were freed");
        assert!(no_definite, "memcheck found a definite leak:\n{self}");
        assert_ne!(
            self.exit,
            Some(MEMCHECK_ERROR_EXIT),
            "memcheck failed the run:\n{self}"
        );
        assert_eq!(
            self.value("fds_before"),
            self.value("fds_after"),
            "the transaction left a descriptor open:\n{self}"
        );
        assert_eq!(
            self.value("threads_before"),
            self.value("threads_after"),
            "the transaction left a thread behind:\n{self}"
        );
        assert!(
            self.value("fds_before").is_some() && self.value("threads_before").is_some(),
            "the driver did not finish:\n{self}"
        );
        assert_eq!(self.exit, Some(0), "the driver failed:\n{self}");
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {:?}\n--- driver stdout\n{}--- driver stderr\n{}--- memcheck log\n{}",
            self.exit, self.stdout, self.stderr, self.log
        )
    }
}

/// The committed suppressions: only errors proven to be in libpam, glibc or ld.so; one
/// that names the module (or the Rust code it is built from) is refused.
pub fn suppressions() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("valgrind/pam_toopher.supp");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(
            !["pam_toopher", "toopher_ipc", "pam-bindings", "pam::"]
                .iter()
                .any(|m| line.contains(m)),
            "{} suppresses the module's own code: {line}",
            path.display()
        );
    }
    path
}

/// Panics unless valgrind can run: the suite must not pass without it.
pub fn require_valgrind() {
    let out = Command::new("valgrind").arg("--version").output();
    assert!(
        matches!(&out, Ok(o) if o.status.success()),
        "valgrind is required for this suite (scripts/test installs it; apt-get install valgrind): {out:?}"
    );
}

/// Runs `pam-script` under memcheck for `user` on `stack`, answering with `answers`.
pub fn login(stack: &Stack, user: &str, conv: Conv, answers: &[&str]) -> Run {
    run(
        stack,
        &[
            "--user",
            user,
            "--rhost",
            "192.0.2.77",
            "--conv",
            match conv {
                Conv::Script => "script",
                Conv::NullReply => "null-reply",
                Conv::NullText => "null-text",
            },
        ],
        answers,
    )
}

/// Runs the driver under memcheck with `args` (after the stack's) and `answers`.
pub fn run(stack: &Stack, args: &[&str], answers: &[&str]) -> Run {
    require_valgrind();
    let supp = suppressions();
    let logdir = tempfile::Builder::new()
        .prefix("memcheck-")
        .tempdir()
        .expect("tempdir");
    let log_path = logdir.path().join("memcheck.log");
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=memcheck",
        &format!("--error-exitcode={MEMCHECK_ERROR_EXIT}"),
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
        // The module is dlclose'd by pam_end; keep its symbols for the leak report.
        "--keep-debuginfo=yes",
        "--num-callers=40",
    ])
    .arg(format!("--suppressions={}", supp.display()))
    .arg(format!("--log-file={}", log_path.display()))
    .arg(crate::artifact("pam-script"))
    .arg("--confdir")
    .arg(stack.dir.path())
    .args(["--service", &stack.service])
    .args(args);
    for a in answers {
        cmd.args(["--answer", a]);
    }
    let out = cmd.output().expect("run valgrind");
    Run {
        exit: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}
