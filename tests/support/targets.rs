//! The targets the crash matrix runs on: this machine's, a static musl build, and aarch64 under
//! qemu-user. Each fixture is built for its target with cargo, once per test process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::{program, Finished, Fixture};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// What `cargo test` builds for: x86_64 (or aarch64) Linux with glibc.
    Host,
    /// `x86_64-unknown-linux-musl`: a static binary, as `FROM scratch` images ship.
    Musl,
    /// `aarch64-unknown-linux-gnu`, run under `qemu-aarch64`.
    Aarch64,
}

/// Where qemu-user finds aarch64's dynamic loader and libraries (Debian's
/// `libc6-dev-arm64-cross`).
const AARCH64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// A crate whose programs the matrix runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FixtureCrate {
    /// `fixtures/`, the workspace member with the crash cases.
    Fixtures,
    /// `tests/panic-abort/`, built with `panic = "abort"` (a workspace cannot set it per crate).
    PanicAbort,
}

impl Target {
    pub fn triple(self) -> Option<&'static str> {
        match self {
            Target::Host => None,
            Target::Musl => Some("x86_64-unknown-linux-musl"),
            Target::Aarch64 => Some("aarch64-unknown-linux-gnu"),
        }
    }

    /// The program `bin` of `krate`, built for this target and started as qemu needs; `None`
    /// (with a line saying why) where this machine cannot build or run it. In CI, where
    /// `.ci/run` installs the toolchains, that is a failure instead.
    pub fn fixture(self, krate: FixtureCrate, bin: &str) -> Option<Fixture> {
        self.launch(krate, bin, &[])
    }

    /// As [`Target::fixture`], as PID 1 of a new PID namespace, as in a container without an
    /// init.
    pub fn fixture_as_pid_1(self, krate: FixtureCrate, bin: &str) -> Option<Fixture> {
        self.launch(krate, bin, &["unshare", "--pid", "--fork"])
    }

    fn launch(self, krate: FixtureCrate, bin: &str, outer: &[&str]) -> Option<Fixture> {
        if let Err(missing) = self.toolchain() {
            let message = format!("the {self:?} crash matrix needs {missing}");
            if std::env::var_os("CI").is_some() {
                panic!("{message}: .ci/run installs it");
            }
            say(&format!("skipped on {self:?}: {message} (see .ci/run)"));
            return None;
        }
        let path = built(self, krate, bin);
        let mut launcher: Vec<&str> = outer.to_vec();
        if self == Target::Aarch64 {
            launcher.extend(["qemu-aarch64", "-L", AARCH64_SYSROOT]);
        }
        Some(program(path, &launcher))
    }

    /// Whether this case must be skipped here because qemu-user does not do what the kernel does;
    /// says so on stderr, with `why`, as measured.
    pub fn emulation_falls_short(self, case: &str, why: &str) -> bool {
        let skipped = self == Target::Aarch64;
        if skipped {
            say(&format!("skipped on {self:?}: {case}: {why}"));
        }
        skipped
    }

    /// Runs a fixture, and sets apart the lines that are not records, less qemu's own report of
    /// the guest's death (`qemu: uncaught target signal 11 …`), which only the emulator writes.
    pub fn run(self, fixture: Fixture) -> (Finished, Vec<String>) {
        let (finished, mut text) = fixture.run_allowing_text();
        if self == Target::Aarch64 {
            text.retain(|line| !line.starts_with("qemu: uncaught target signal"));
        }
        (finished, text)
    }

    /// What this machine lacks to build and run for this target.
    fn toolchain(self) -> Result<(), String> {
        let Some(triple) = self.triple() else {
            return Ok(());
        };
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
        let libdir = Command::new(rustc)
            .args(["--print", "target-libdir", "--target", triple])
            .output()
            .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
            .unwrap_or_default();
        let has_std = std::fs::read_dir(&libdir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("libstd-"))
        });
        if !has_std {
            return Err(format!(
                "the Rust standard library for {triple} (rustup target add)"
            ));
        }
        if self == Target::Aarch64 {
            for tool in ["aarch64-linux-gnu-gcc", "qemu-aarch64"] {
                if !on_path(tool) {
                    return Err(format!("{tool} (gcc-aarch64-linux-gnu, qemu-user)"));
                }
            }
            if !Path::new(AARCH64_SYSROOT).join("lib").is_dir() {
                return Err(format!("{AARCH64_SYSROOT} (libc6-dev-arm64-cross)"));
            }
        }
        Ok(())
    }
}

/// Writes a line to the test run's stderr even where the harness captures test output (it
/// captures `eprintln!`, not `io::stderr()`), so that a skip is never silent.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(tool).is_file())
    })
}

/// `bin` of `krate` built for `target`: built once per test process, all of the crate's programs
/// at once, in a target directory of its own (the one `cargo test` holds is locked while the
/// tests run).
pub fn built(target: Target, krate: FixtureCrate, bin: &str) -> PathBuf {
    type Built = HashMap<(Target, FixtureCrate), PathBuf>;
    static BUILT: Mutex<Option<Built>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (target, krate);
    let directory = match built.get_or_insert_with(HashMap::new).get(&key) {
        Some(directory) => directory.clone(),
        None => {
            let directory = build(target, krate);
            built.as_mut().unwrap().insert(key, directory.clone());
            directory
        }
    };
    directory.join(bin)
}

/// Builds every program of `krate` for `target`; returns the directory they are in.
fn build(target: Target, krate: FixtureCrate) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(match krate {
        FixtureCrate::Fixtures => "fixtures",
        FixtureCrate::PanicAbort => "panic-abort",
    });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "--bins"]);
    match krate {
        FixtureCrate::Fixtures => command.args(["--package", "crashguard-fixtures"]),
        FixtureCrate::PanicAbort => command
            .arg("--manifest-path")
            .arg(root.join("tests/panic-abort/Cargo.toml")),
    };
    match target.triple() {
        Some(triple) => command.args(["--target", triple]),
        None if krate == FixtureCrate::Fixtures => command.args(["--features", "frameworks"]),
        None => &mut command,
    };
    let status = command
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building {krate:?} for {target:?} failed");
    target_dir.join(target.triple().unwrap_or("")).join("debug")
}
