//! A service as a child process: the binary that cargo built, found beside the test
//! executable; the test's config, written as the `oms.toml` it reads; its log, in the data dir.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use figment::providers::{Format, Serialized, Toml};
use oms_config::Config;
use serde_json::Value;

use crate::SERVICES;

/// Starts the binary of `service` with `config`, logging to `<data_dir>/<service>.log`.
pub(crate) fn spawn(config: &Config, service: &str) -> Child {
    let file = config.data_dir.join("oms.toml");
    write_config_file(config, &file);
    let log = File::options()
        .create(true)
        .append(true)
        .open(config.data_dir.join(format!("{service}.log")))
        .expect("a log file");
    own_settings(Command::new(binary(service)), config, &file)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting a service binary")
}

/// Runs the command-line tool `oms-<tool>` with `args` and `config` to its end.
pub(crate) fn run_tool(config: &Config, tool: &str, args: &[&str]) -> std::process::Output {
    let file = config.data_dir.join("oms.toml");
    write_config_file(config, &file);
    own_settings(Command::new(binary(tool)), config, &file)
        .args(args)
        .output()
        .expect("running a tool")
}

/// `command` reads the test's config (`file`) and nothing else: not the `OMS_*` settings of
/// whoever runs the tests.
fn own_settings(mut command: Command, config: &Config, file: &Path) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OMS_") {
            command.env_remove(key);
        }
    }
    command
        .env("OMS_CONFIG", file)
        .env("OMS_PROFILE", &config.profile);
    command
}

/// The last `lines` lines each service logged in `dir` (warnings and errors).
pub(crate) fn log_tails(dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for service in SERVICES {
        let log = std::fs::read_to_string(dir.join(format!("{service}.log"))).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        out.push_str(&format!("--- {service} ({} lines)\n", all.len()));
        for line in &all[all.len().saturating_sub(lines)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Writes `config` as the `oms.toml` a service binary reads, all of it in the `default` table
/// (which every profile takes). A `Config` serializes to JSON, whose strings, numbers, booleans
/// and arrays are TOML as they are; objects become inline tables, and nulls (options not set)
/// are left out.
fn write_config_file(config: &Config, file: &Path) {
    fn toml(value: &Value) -> String {
        match value {
            Value::Object(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| format!("{k} = {}", toml(v)))
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(toml).collect();
                format!("[{}]", items.join(", "))
            }
            scalar => scalar.to_string(),
        }
    }
    let json = serde_json::to_value(config).expect("a config serializes");
    std::fs::write(file, format!("default = {}\n", toml(&json))).expect("writing oms.toml");
    // A setting lost on the way would have the services run with other settings than the test
    // names: read the file back as they will (without the environment, which they do not get).
    let read: Config = figment::Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file(file).nested())
        .select(&config.profile)
        .extract()
        .expect("oms.toml reads back");
    let read = Config {
        profile: config.profile.clone(),
        ..read
    };
    assert_eq!(&read, config, "oms.toml holds the test's config");
}

/// What the process tests need first: they run the built binaries, they do not build them.
const BUILD_FIRST: &str =
    "run `cargo build --workspace --all-targets` (scripts/test.sh does) before `cargo test`";

/// The binary `oms-<service>` that cargo built beside this test's executable (which runs from
/// `<target>/<profile>/deps/`).
///
/// `cargo build --workspace --all-targets` builds it: the same targets as `cargo test
/// --workspace --all-targets`, so the same features. With `--bins` alone cargo would resolve
/// features without the dev-dependencies (so oms-edge without `testing`, which e2e turns on),
/// build the libraries and binaries again with other features, and the next `cargo test` would
/// build them back.
///
/// It must also be newer than every source it was built from, or it would test old code. Its
/// sources are the workspace's files that cargo lists in `oms-<service>.d` beside it (the
/// dep-info it writes for other build tools). Comparing with the test executable instead would
/// be wrong: a change to a test alone rebuilds only the test, leaving the binaries older but
/// current.
fn binary(service: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    let binary = dir.join(format!("oms-{service}"));
    let built = modified(&binary)
        .unwrap_or_else(|| panic!("{} is missing: {BUILD_FIRST}", binary.display()));
    let dep_info = binary.with_extension("d");
    let rule = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("reading {}: {e}: {BUILD_FIRST}", dep_info.display()));
    // `<binary>: <source> <source> …`, a space in a path written `\ `.
    let (_, sources) = rule
        .split_once(": ")
        .expect("a make rule in the dep-info file");
    for source in sources.replace("\\ ", "\0").split_whitespace() {
        let source = PathBuf::from(source.replace('\0', " "));
        let current = modified(&source).is_some_and(|changed| changed <= built);
        assert!(
            current,
            "{} is older than its source {} (or that is gone): {BUILD_FIRST}",
            binary.display(),
            source.display()
        );
    }
    binary
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
