//! The workspace checks `cargo xtask test` runs before booting anything: fmt, clippy, unit tests.

use std::time::Instant;

use crate::build::{cargo, IMAGE_TARGET};
use crate::smoke::TestResult;

/// One cargo invocation and the name it is reported under.
pub struct Check {
    pub name: &'static str,
    pub args: &'static [&'static str],
}

/// In the order they run: cheapest and most common failures first.
pub const ALL: &[Check] = &[
    Check {
        name: "fmt",
        args: &["fmt", "--all", "--check"],
    },
    Check {
        name: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    },
    Check {
        // The bare-metal code (entry paths, world switches) exists only on this target.
        name: "clippy-image",
        args: &[
            "clippy",
            "-p",
            "xenolith",
            "-p",
            "test-guest",
            "-p",
            "vmx",
            "-p",
            "svm",
            "-p",
            "drivers-split",
            "-p",
            "pvh-guest-rt",
            "-p",
            "xen-abi",
            "--bins",
            "--lib",
            "--target",
            IMAGE_TARGET,
            "--",
            "-D",
            "warnings",
        ],
    },
    Check {
        name: "unit-tests",
        args: &["test", "--workspace"],
    },
    Check {
        // The XenStore parser and store under 20,000 random request
        // streams, ring byte streams, operation sequences and quota-sized
        // request sequences (about 15 s; cargo-fuzz would need a nightly
        // toolchain).
        name: "fuzz-xenstore",
        args: &[
            "test",
            "-p",
            "drivers-split",
            "--release",
            "--lib",
            "fuzz_requests_long",
            "--",
            "--ignored",
        ],
    },
];

/// Runs one check with its output on the terminal.
pub fn run(check: &Check) -> TestResult {
    println!("==> cargo {}", check.args.join(" "));
    let start = Instant::now();
    let outcome = cargo().args(check.args).status();
    let wall = start.elapsed();
    let passed = match outcome {
        Ok(status) if status.success() => true,
        Ok(status) => {
            println!("    cargo {} failed ({status})", check.args[0]);
            false
        }
        Err(err) => {
            println!("    could not run cargo: {err}");
            false
        }
    };
    let result = TestResult {
        name: check.name.to_string(),
        passed,
        wall,
        caps_after: None,
    };
    result.print();
    result
}
