//! compose.yaml, checked against the Compose Specification's JSON schema (ci/compose-spec.json)
//! and against the project: every `OMS_*` variable is a config key, each service's health check
//! asks `/readyz` on the port its config gives it, each NATS client mounts its own identity's
//! secrets read-only and nobody else's, no secret is written in the file, every `oms-*` binary
//! is one the Dockerfile builds, and the volumes and `depends_on` targets exist. Every
//! repository file it mounts exists; Prometheus scrapes every OMS service on its port with a token
//! the secrets one-shot makes for it, and Grafana finds its provisioning and dashboards.
//!
//! The facts come from the project itself: `oms_config::Config` (loaded by `Config::figment`
//! with each container's environment), `oms_topology::identity::Identity`, `cargo metadata` and
//! the Dockerfile. `${VAR:-default}` takes its default: the machine's environment is not read.
//!
//! The secrets one-shot itself runs for real, in a private mount namespace (`unshare`), with
//! the binaries cargo built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use oms_e2e::{workspace_file as read, workspace_root as root};
use std::sync::{LazyLock, Mutex, OnceLock};

use figment::Jail;
use jsonschema::{ValidationError, Validator, error::ValidationErrorKind as Kind};
use oms_config::Config;
use oms_topology::identity::Identity;
use serde_json::Value;

/// The one-shot that makes the secrets and copies each recipient's own to `$OUT_DIR/<recipient>`.
const SECRETS_MAKER: &str = "make-secrets.sh";

#[test]
fn compose_yaml_is_valid_and_consistent_with_the_project() {
    let problems = check(&compose_doc());
    let problems = problems.join("\n  ");
    assert!(problems.is_empty(), "compose.yaml:\n  {problems}");
}

// ---- compose.yaml as JSON ----

fn compose_doc() -> Value {
    load_compose(&read("compose.yaml")).unwrap_or_else(|e| panic!("compose.yaml: {e}"))
}

/// The YAML as JSON, `<<` merge keys resolved (compose.yaml builds its services from anchors),
/// `${...}` interpolated.
fn load_compose(text: &str) -> Result<Value, serde_norway::Error> {
    let mut doc = serde_norway::from_str(text)?;
    resolve_merge_keys(&mut doc);
    interpolate(&mut doc);
    Ok(doc)
}

/// YAML's `<<`: the merged mappings' keys that the mapping lacks. Inner mappings first, so that
/// a merged mapping's own `<<` is resolved before it is merged.
fn resolve_merge_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(resolve_merge_keys);
            let sources = match map.remove("<<") {
                Some(Value::Array(list)) => list,
                one => one.into_iter().collect(),
            };
            for (k, v) in sources.iter().filter_map(Value::as_object).flatten() {
                map.entry(k).or_insert_with(|| v.clone());
            }
        }
        Value::Array(list) => list.iter_mut().for_each(resolve_merge_keys),
        _ => {}
    }
}

/// Compose's `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, as
/// if no variable were set: the defaults, else empty.
fn interpolate(value: &mut Value) {
    match value {
        Value::String(s) => *s = interpolate_str(s),
        Value::Object(map) => map.values_mut().for_each(interpolate),
        Value::Array(list) => list.iter_mut().for_each(interpolate),
        _ => {}
    }
}

fn interpolate_str(s: &str) -> String {
    let name_len = |s: &str| {
        s.find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(s.len())
    };
    let (mut out, mut rest) = (String::new(), s);
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            let op = &braced[name_len(braced)..end];
            out.push_str(op.strip_prefix(":-").or(op.strip_prefix('-')).unwrap_or(""));
            rest = braced.get(end + 1..).unwrap_or("");
        } else if name_len(rest) == 0 {
            out.push('$');
        } else {
            rest = &rest[name_len(rest)..];
        }
    }
    out + rest
}

// ---- the Compose Specification ----

fn schema() -> &'static Validator {
    static SCHEMA: OnceLock<Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: Value =
            serde_json::from_str(&read("ci/compose-spec.json")).expect("the schema is JSON");
        // The schema's durations are Go's ("5s", "1m30s"), not ISO 8601's ("PT5S").
        jsonschema::options()
            .should_validate_formats(true)
            .with_format("duration", is_go_duration)
            .build(&schema)
            .expect("ci/compose-spec.json is a valid JSON schema")
    })
}

fn is_go_duration(s: &str) -> bool {
    const UNITS: [&str; 7] = ["ns", "us", "µs", "ms", "s", "m", "h"];
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    if rest == "0" {
        return true;
    }
    let mut parts = 0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !c.is_ascii_digit() && c != '.');
        let n = n.unwrap_or(rest.len());
        match UNITS.iter().find(|u| rest[n..].starts_with(**u)) {
            Some(unit) if rest[..n].parse::<f64>().is_ok() => rest = &rest[n + unit.len()..],
            _ => return false,
        }
        parts += 1;
    }
    parts > 0
}

fn schema_problems(doc: &Value) -> Vec<String> {
    let line = |error: &ValidationError| {
        let error = most_specific(error);
        let at = error.instance_path().to_string();
        let at = at.trim_start_matches('/').replace('/', ".");
        let message = match error.kind() {
            Kind::AdditionalProperties { unexpected } => format!(
                "unknown key '{}' (not in the Compose schema)",
                unexpected.join("', '")
            ),
            Kind::OneOfNotValid { .. } | Kind::AnyOf { .. } => "none of the forms allowed".into(),
            _ => error.to_string(),
        };
        format!("schema: {at}: {message}")
    };
    schema().iter_errors(doc).map(|e| line(&e)).collect()
}

/// Within a `oneOf` or `anyOf`, the error of the alternative that got furthest into the value
/// (the alternatives of another type fail at the value itself and say little).
fn most_specific<'e>(error: &'e ValidationError<'e>) -> &'e ValidationError<'e> {
    let (Kind::OneOfNotValid { context } | Kind::AnyOf { context }) = error.kind() else {
        return error;
    };
    let depth = |e: &ValidationError| e.instance_path().to_string().matches('/').count();
    let other_type = |e: &ValidationError| {
        matches!(e.kind(), Kind::Type { .. }) && e.instance_path() == error.instance_path()
    };
    let alternatives = context.iter().flatten().filter(|e| !other_type(e));
    alternatives
        .max_by_key(|e| depth(e))
        .map_or(error, most_specific)
}

// ---- a service, as the checks read it ----

struct Service {
    image: String,
    /// `entrypoint` + `command` (the OMS image has no ENTRYPOINT).
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    mounts: Vec<Mount>,
    depends_on: Vec<String>,
    /// The health check's `test`, as a list.
    health: Vec<String>,
}

struct Mount {
    /// A named volume (not a host path, not anonymous).
    volume: bool,
    source: String,
    target: String,
    read_only: bool,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::String(line) => line.split_whitespace().map(String::from).collect(),
        other => other.as_array().into_iter().flatten().map(text).collect(),
    }
}

impl Service {
    fn from_json(v: &Value) -> Service {
        let env = match &v["environment"] {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            other => (list(other)
                .iter()
                .map(|kv| kv.split_once('=').unwrap_or((kv, ""))))
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        };
        let depends_on = match &v["depends_on"] {
            Value::Object(map) => map.keys().cloned().collect(),
            other => list(other),
        };
        let mounts = v["volumes"].as_array().into_iter().flatten();
        Service {
            image: text(&v["image"]),
            argv: [list(&v["entrypoint"]), list(&v["command"])].concat(),
            env,
            mounts: mounts.map(Mount::from_json).collect(),
            depends_on,
            health: list(&v["healthcheck"]["test"]),
        }
    }

    fn mount_at(&self, target: &str) -> Option<&Mount> {
        let same = |m: &&Mount| m.target.trim_end_matches('/') == target.trim_end_matches('/');
        self.mounts.iter().find(same)
    }

    fn makes_secrets(&self) -> bool {
        self.argv.iter().any(|a| a.ends_with(SECRETS_MAKER))
    }

    /// The repository file or folder the container sees at `path`, through its bind mounts.
    fn repository_path(&self, path: &str) -> Option<String> {
        let binds = self.mounts.iter().filter(|m| m.source.starts_with("./"));
        binds.into_iter().find_map(|m| {
            let rest = path.strip_prefix(m.target.trim_end_matches('/'))?;
            let source = m.source.trim_start_matches("./").trim_end_matches('/');
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{source}{rest}"))
        })
    }
}

impl Mount {
    fn from_json(spec: &Value) -> Mount {
        if spec.is_object() {
            return Mount {
                volume: text(&spec["type"]) == "volume" && !text(&spec["source"]).is_empty(),
                source: text(&spec["source"]),
                target: text(&spec["target"]),
                read_only: spec["read_only"] == Value::Bool(true),
            };
        }
        let spec = text(spec);
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, target) = match parts.as_slice() {
            [source, target, ..] => (*source, *target),
            _ => ("", spec.as_str()),
        };
        Mount {
            volume: !source.is_empty() && !source.starts_with(['.', '/', '~']),
            source: source.into(),
            target: target.into(),
            read_only: parts
                .get(2)
                .is_some_and(|m| m.split(',').any(|m| m == "ro")),
        }
    }
}

/// The broker identity a command connects as; None for one that does not connect.
fn identity_of(argv: &[String]) -> Option<&'static str> {
    let name = match argv.first()?.as_str() {
        // `oms-provision creds` only makes seeds; `topology` connects.
        "oms-provision" if argv.iter().any(|a| a == "topology") => "provisioner",
        "oms-dlq" => "operator",
        binary => binary.strip_prefix("oms-")?,
    };
    Identity::from_name(name).map(Identity::name)
}

// ---- the project: the workspace, the Dockerfile, the config ----

/// Binary -> package, from `cargo metadata`.
fn workspace_binaries() -> &'static BTreeMap<String, String> {
    static BINARIES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let out = std::process::Command::new(env!("CARGO"))
            .args("metadata --no-deps --offline --format-version 1".split(' '))
            .current_dir(root())
            .output()
            .expect("cargo metadata runs");
        assert!(out.status.success(), "cargo metadata failed");
        let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
        let mut binaries = BTreeMap::new();
        for package in metadata["packages"].as_array().expect("packages") {
            for target in package["targets"].as_array().into_iter().flatten() {
                if list(&target["kind"]).iter().any(|k| k == "bin") {
                    binaries.insert(text(&target["name"]), text(&package["name"]));
                }
            }
        }
        binaries
    })
}

/// What compose.yaml relies on in the Dockerfile.
struct Image {
    /// `ARG OMS_BINARIES`: the binaries installed.
    binaries: Vec<String>,
    /// The `-p` of `cargo build`: the packages built.
    packages: Vec<String>,
    /// `COPY SOURCE TARGET` of repository files: target -> source.
    copies: BTreeMap<String, String>,
    /// `ENV KEY=VALUE`.
    env: BTreeMap<String, String>,
}

fn read_image() -> Image {
    // Comments may name instructions too; only instructions count.
    let text = read("Dockerfile")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions = |name: &'static str| {
        let lines = text.lines().map(str::trim);
        lines.filter_map(move |l| l.strip_prefix(name).map(str::split_whitespace))
    };
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let binaries = text
        .lines()
        .find_map(|l| l.strip_prefix("ARG OMS_BINARIES="));
    // The `cargo build` command, up to the next `&&`.
    let build = text.split_once("cargo build").map_or("", |(_, b)| b);
    let build = words(build.split("&&").next().unwrap_or(""));
    let copies = instructions("COPY ").filter_map(|args| match args.collect::<Vec<_>>()[..] {
        [source, target] => Some((target.to_string(), source.to_string())),
        _ => None,
    });
    let env = instructions("ENV ")
        .flatten()
        .filter_map(|e| e.split_once('='));
    Image {
        binaries: words(binaries.unwrap_or("").trim_matches('"')),
        packages: build
            .windows(2)
            .filter(|w| w[0] == "-p")
            .map(|w| w[1].clone())
            .collect(),
        copies: copies.collect(),
        env: env.map(|(k, v)| (k.into(), v.into())).collect(),
    }
}

/// The dotted paths of every value of the config (`nats.url`, `edge.http_port`, ...).
fn config_keys() -> BTreeSet<String> {
    let defaults = serde_json::to_value(Config::default()).expect("Config serializes");
    leaves(&defaults).into_iter().map(|(k, _)| k).collect()
}

fn leaves(value: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (k, v) in value.as_object().into_iter().flatten() {
        match v {
            Value::Object(_) => {
                out.extend(leaves(v).into_iter().map(|(s, v)| (format!("{k}.{s}"), v)))
            }
            _ => out.push((k.clone(), v)),
        }
    }
    out
}

/// A clean environment and folder (one at a time), entered once `cargo metadata` has run: it
/// must not run in an emptied environment.
#[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
fn jail(f: impl FnOnce(&mut Jail)) {
    workspace_binaries();
    Jail::expect_with(|jail| {
        jail.clear_env();
        f(jail);
        Ok(())
    });
}

/// What the config makes of an `OMS_*` variable: `Some(key)` it sets, `Some("")` when it picks
/// the profile or the file, `None` when ignored. Found by setting it alone to a marker.
fn config_reads(var: &str) -> Option<String> {
    const MARK: &str = "compose-check-marker";
    static CACHE: LazyLock<Mutex<BTreeMap<String, Option<String>>>> =
        LazyLock::new(Default::default);
    if let Some(read) = CACHE.lock().unwrap().get(var) {
        return read.clone();
    }
    let mut read = None;
    jail(|jail| {
        jail.create_file(MARK, &format!("[default]\nlog = \"{MARK}\""))
            .expect("a file in the jail");
        jail.set_env(var, MARK);
        let figment = Config::figment(Path::new("absent.toml"));
        let merged: Value = figment.extract().expect("the config's values, as JSON");
        read = match leaves(&merged).into_iter().find(|(_, v)| *v == MARK) {
            Some((key, _)) => Some(key),
            None if figment.profile() == MARK => Some(String::new()),
            None if Config::load().is_ok_and(|c| c.log == MARK) => Some(String::new()),
            None => None,
        };
    });
    CACHE.lock().unwrap().insert(var.into(), read.clone());
    read
}

/// The config a container of the image loads: the image's and the service's environment, and
/// the repository file the Dockerfile copies to `OMS_CONFIG`.
fn container_config(svc: &Service, image: &Image) -> Result<Config, String> {
    let mut env = image.env.clone();
    env.extend(svc.env.clone());
    let toml = match env.get("OMS_CONFIG") {
        None => String::new(),
        Some(file) => match image.copies.get(file) {
            Some(source) => read(source),
            None => return Err(format!("OMS_CONFIG {file}: not a file of the image")),
        },
    };
    let mut config = Err(String::new());
    jail(|jail| {
        env.iter().for_each(|(k, v)| jail.set_env(k, v));
        jail.create_file("oms.toml", &toml).expect("a jail file");
        let figment = Config::figment(&jail.directory().join("oms.toml"));
        config = figment
            .extract()
            .map_err(|e| format!("the config fails: {e}"));
    });
    config
}

// ---- the checks ----

/// Volume -> the recipient whose secrets the secrets one-shot copies into it.
type Owners<'d> = BTreeMap<&'d str, &'d str>;

/// Every problem of `doc`, one line each: `where: what`.
fn check(doc: &Value) -> Vec<String> {
    let mut problems = schema_problems(doc);
    let services: BTreeMap<&str, Service> = (doc["services"].as_object().into_iter().flatten())
        .map(|(k, v)| (k.as_str(), Service::from_json(v)))
        .collect();
    let declared: BTreeSet<&str> = (doc["volumes"].as_object().into_iter().flatten())
        .map(|(k, _)| k.as_str())
        .collect();
    let image = read_image();
    let mut owners = Owners::new();
    // OMS service -> the port of its HTTP server (and /metrics).
    let mut http_ports = BTreeMap::new();
    for maker in services.values().filter(|s| s.makes_secrets()) {
        let out_dir = format!("{}/", maker.env.get("OUT_DIR").map_or("", String::as_str));
        for m in &maker.mounts {
            if let Some(recipient) = m.target.strip_prefix(&out_dir) {
                owners.insert(m.source.as_str(), recipient.trim_end_matches('/'));
            }
        }
    }
    for (name, svc) in &services {
        let mut add = |what: String| problems.push(format!("services.{name}.{what}"));
        let oms_binary = svc.argv.first().filter(|b| b.starts_with("oms-"));
        // A misspelt binary connects as nobody: reported as such, not as a stranger's mounts.
        let misspelt = oms_binary.is_some_and(|b| !workspace_binaries().contains_key(b));
        for m in svc.mounts.iter().filter(|m| m.volume) {
            let v = m.source.as_str();
            if !declared.contains(v) {
                add(format!("volumes: named volume '{v}' is not declared"));
            }
            // Only a container that connects as the recipient may read its secrets.
            // A recipient that is no broker identity (postgres, prometheus, grafana): the
            // service of that name.
            let Some(owner) = owners.get(v).filter(|_| !svc.makes_secrets()) else {
                continue;
            };
            if Identity::from_name(owner).is_none() {
                if owner != name {
                    add(format!(
                        "volumes: mounts {v}: it could read {owner}'s secrets"
                    ));
                }
            } else if identity_of(&svc.argv) != Some(owner) && !misspelt {
                add(format!("volumes: mounts {v}: it could read {owner}'s seed"));
            }
        }
        for m in svc.mounts.iter().filter(|m| m.source.starts_with("./")) {
            if !root().join(&m.source).exists() {
                add(format!("volumes: {} is not in the repository", m.source));
            }
        }
        for dep in &svc.depends_on {
            if !services.contains_key(dep.as_str()) {
                add(format!("depends_on: '{dep}' is not a service of this file"));
            }
        }
        for (var, value) in &svc.env {
            if let Some(problem) = env_problem(var, value) {
                add(format!("environment.{var}: {problem}"));
            }
        }
        let Some(binary) = oms_binary else {
            continue;
        };
        let Some(package) = workspace_binaries().get(binary) else {
            let all = Vec::from_iter(workspace_binaries().keys().map(String::as_str)).join(", ");
            add(format!(
                "command: '{binary}' is not a workspace binary ({all})"
            ));
            continue;
        };
        if !image.binaries.contains(binary) || !image.packages.contains(package) {
            add(format!(
                "command: '{binary}' is not in the image: the Dockerfile must build -p {package} \
                 and list it in OMS_BINARIES"
            ));
        }
        match container_config(svc, &image) {
            Err(e) => add(format!("environment: {e}")),
            Ok(config) => {
                let section = binary.trim_start_matches("oms-");
                let json = serde_json::to_value(&config).expect("Config serializes");
                if let Some(port) = json[section]["http_port"].as_u64() {
                    http_ports.insert(name.to_string(), port);
                    health_problems(name, section, port, &svc.health)
                        .into_iter()
                        .for_each(&mut add);
                }
                if let Some(identity) = identity_of(&svc.argv) {
                    let creds = config.creds_dir().to_string_lossy().into_owned();
                    creds_problems(identity, svc, &creds, &owners)
                        .into_iter()
                        .for_each(&mut add);
                }
            }
        }
    }
    for (name, svc) in &services {
        let found = if svc.image.starts_with("prom/prometheus:") {
            prometheus_problems(name, svc, &http_ports, &owners)
        } else if svc.image.starts_with("grafana/grafana:") {
            grafana_problems(svc, &services)
        } else {
            continue;
        };
        problems.extend(found.into_iter().map(|p| format!("services.{name}.{p}")));
    }
    for volume in declared {
        let mounts = |s: &Service| s.mounts.iter().any(|m| m.volume && m.source == volume);
        if !services.values().any(mounts) {
            problems.push(format!("volumes.{volume}: declared but not mounted"));
        }
    }
    problems
}

/// Prometheus: its config is a repository file, which scrapes every OMS service on its HTTP port,
/// with a bearer token from the volume the secrets one-shot fills for it.
fn prometheus_problems(
    name: &str,
    svc: &Service,
    http_ports: &BTreeMap<String, u64>,
    owners: &Owners,
) -> Vec<String> {
    let config = (svc
        .argv
        .iter()
        .find_map(|a| a.strip_prefix("--config.file=")))
    .unwrap_or("/etc/prometheus/prometheus.yml");
    let Some(file) = svc.repository_path(config) else {
        return vec![format!(
            "command: --config.file={config} is not a repository file mounted into it"
        )];
    };
    let Ok(text) = std::fs::read_to_string(root().join(&file)) else {
        return vec![format!(
            "command: --config.file={config}: {file} is missing"
        )];
    };
    let doc: Value = match serde_norway::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("command: {file}: {e}")],
    };
    let mut problems = Vec::new();
    let mut targets = BTreeSet::new();
    for scrape in doc["scrape_configs"].as_array().into_iter().flatten() {
        let statics = scrape["static_configs"].as_array().into_iter().flatten();
        targets.extend(statics.flat_map(|s| list(&s["targets"])));
        let Some(token) = scrape["authorization"]["credentials_file"].as_str() else {
            continue;
        };
        let (dir, token_file) = token.rsplit_once('/').unwrap_or(("", token));
        let filled = svc.mount_at(dir).filter(|m| m.volume && m.read_only);
        if filled.and_then(|m| owners.get(m.source.as_str())) != Some(&name) {
            problems.push(format!(
                "volumes: {file} reads {token}: mount there, read-only, the volume the secrets \
                 one-shot fills for {name}"
            ));
        } else if !read("compose/make-secrets.sh").contains(token_file) {
            problems.push(format!(
                "{file}: compose/{SECRETS_MAKER} makes no {token_file}"
            ));
        }
    }
    for (service, port) in http_ports {
        if !targets.contains(&format!("{service}:{port}")) {
            problems.push(format!(
                "{file}: scrapes no {service}:{port} ({service}'s /metrics)"
            ));
        }
    }
    problems
}

/// Grafana: its provisioning folder, the dashboards folders it names and its home dashboard are
/// repository files mounted into it; its data sources are services of this file.
fn grafana_problems(svc: &Service, services: &BTreeMap<&str, Service>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(provisioning) = svc.repository_path("/etc/grafana/provisioning") else {
        return vec!["volumes: no repository folder at /etc/grafana/provisioning".into()];
    };
    let yaml_files = |folder: &str| -> Vec<Value> {
        let entries = std::fs::read_dir(root().join(folder)).into_iter().flatten();
        let paths = entries.flatten().map(|e| e.path());
        let paths = paths.filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"));
        let texts = paths.map(|p| std::fs::read_to_string(&p).unwrap_or_default());
        texts
            .filter_map(|t| serde_norway::from_str(&t).ok())
            .collect()
    };
    let dashboards = yaml_files(&format!("{provisioning}/dashboards"));
    let providers = dashboards
        .iter()
        .flat_map(|d| d["providers"].as_array().cloned());
    let mut folders = 0;
    for provider in providers.flatten() {
        let path = text(&provider["options"]["path"]);
        let has_json = |folder: &str| {
            let entries = std::fs::read_dir(root().join(folder)).into_iter().flatten();
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        };
        match svc.repository_path(&path) {
            Some(folder) if has_json(&folder) => folders += 1,
            _ => problems.push(format!(
                "volumes: the dashboards folder {path} is no repository folder of dashboards"
            )),
        }
    }
    if folders == 0 && problems.is_empty() {
        problems.push(format!(
            "volumes: {provisioning}/dashboards names no dashboards folder"
        ));
    }
    if let Some(home) = svc.env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        let file = svc.repository_path(home);
        if !file.is_some_and(|f| root().join(f).is_file()) {
            problems.push(format!(
                "environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: {home} is no repository file"
            ));
        }
    }
    let sources = yaml_files(&format!("{provisioning}/datasources"));
    for source in sources
        .iter()
        .flat_map(|d| d["datasources"].as_array().cloned())
    {
        for url in source.iter().map(|s| text(&s["url"])) {
            let host = url.split_once("://").map_or("", |(_, r)| r);
            let host = host.split([':', '/']).next().unwrap_or("");
            if !services.contains_key(host) {
                problems.push(format!(
                    "volumes: data source {url}: {host} is not a service of this file"
                ));
            }
        }
    }
    problems
}

/// A variable's problem: an `OMS_*` the config does not read, or a secret written in the file.
fn env_problem(var: &str, value: &str) -> Option<String> {
    let upper = var.to_ascii_uppercase();
    let secret = [
        "PASSWORD", "SECRET", "TOKEN", "NKEY", "SEED", "PRIVATE", "API_KEY",
    ];
    // A variable that names where a secret is (a file, a folder) holds none.
    let location = ["_FILE", "_DIR", "_PATH", "PASSFILE"];
    if !value.is_empty()
        && secret.iter().any(|s| upper.contains(s))
        && !location.iter().any(|l| upper.ends_with(l))
    {
        return Some(format!(
            "a secret written in the file: {SECRETS_MAKER} makes it"
        ));
    }
    let after_scheme = value.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split('/').next().unwrap_or("");
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Some("a password written in a URL: the service reads it from a file".into());
    }
    if !var.starts_with("OMS_") {
        return None;
    }
    let key = match config_reads(var) {
        None => return Some("ignored: Config::figment reads no key from it".into()),
        Some(key) if key.is_empty() => return None,
        Some(key) => key,
    };
    let keys = config_keys();
    if keys.contains(&key) {
        return None;
    }
    let under = |table: &str| {
        let names = keys
            .iter()
            .filter_map(|k| k.strip_prefix(table)?.split('.').next());
        Vec::from_iter(names.collect::<BTreeSet<_>>()).join(", ")
    };
    let parent = key.rsplit_once('.').map_or("", |(p, _)| p);
    let known = match under(&format!("{parent}.")) {
        names if !parent.is_empty() && !names.is_empty() => format!("keys of {parent}: {names}"),
        _ => format!("top-level keys: {}", under("")),
    };
    Some(format!(
        "no config key `{key}` in oms_config::Config ({known})"
    ))
}

/// A service listens on its config section's `http_port`; healthy means GET /readyz answers.
fn health_problems(name: &str, section: &str, port: u64, test: &[String]) -> Vec<String> {
    let urls = Vec::from_iter(test.iter().filter_map(|t| Some(t.split_once("://")?.1)));
    if urls.is_empty() {
        return vec![format!("healthcheck: missing (GET /readyz on port {port})")];
    }
    let mut problems = Vec::new();
    for url in urls {
        let (authority, path) = url.split_once('/').unwrap_or((url, ""));
        let asked = authority.rsplit_once(':').map_or("80", |(_, p)| p);
        let listens = format!("{name} listens on {section}.http_port = {port}");
        if asked != port.to_string() {
            problems.push(format!(
                "healthcheck.test: asks port {asked}, but {listens}"
            ));
        }
        if path != "readyz" {
            problems.push(format!("healthcheck.test: asks /{path}, expected /readyz"));
        }
    }
    problems
}

/// The seed: read-only at the config's creds_dir, from the volume that holds this identity's.
fn creds_problems(identity: &str, svc: &Service, creds: &str, owners: &Owners) -> Vec<String> {
    let Some(mount) = svc.mount_at(creds).filter(|m| m.volume) else {
        return vec![format!(
            "volumes: nats.creds_dir is {creds}: mount {identity}'s seed there"
        )];
    };
    let volume = &mount.source;
    let mut problems = Vec::new();
    if !mount.read_only {
        problems.push(format!("volumes: mount {volume} read-only (:ro)"));
    }
    match owners.get(volume.as_str()) {
        // Another identity's volume: reported as its mount.
        Some(owner) if *owner == identity || Identity::from_name(owner).is_some() => {}
        Some(owner) => problems.push(format!("volumes: {volume} holds {owner}'s seed")),
        None => problems.push(format!("volumes: {volume}: no secrets one-shot fills it")),
    }
    problems
}

/// Broken copies of compose.yaml, each to be refused with its message.
mod broken {
    use super::*;
    use serde_json::json;

    /// A copy of compose.yaml with the value at a JSON pointer set, or removed (`None`).
    fn edited(pointer: &str, value: Option<Value>) -> Value {
        let mut doc = compose_doc();
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let map = doc.pointer_mut(parent).and_then(Value::as_object_mut);
        let map = map.unwrap_or_else(|| panic!("compose.yaml has no mapping at {parent}"));
        match value {
            Some(value) => drop(map.insert(key.into(), value)),
            None => assert!(map.remove(key).is_some(), "compose.yaml has no {pointer}"),
        }
        doc
    }

    /// Each case: the expected problem, then `POINTER = JSON` (the edit; `-POINTER` removes).
    const CASES: &str = r#"
services.payment.environment.OMS_PAYMENT__DATABSE_URL: no config key `payment.databse_url` in oms_config::Config (keys of payment: database_url, http_port)
    /services/payment/environment/OMS_PAYMENT__DATABSE_URL = "x"
services.payment.environment.OMS_NATS____URL: ignored: Config::figment reads no key from it
    /services/payment/environment/OMS_NATS____URL = "x"
services.customer.healthcheck.test: asks port 8092, but customer listens on customer.http_port = 8091
    /services/customer/healthcheck/test = ["CMD", "oms-healthcheck", "http://127.0.0.1:8092/readyz"]
services.inventory.healthcheck.test: asks port 8092, but inventory listens on inventory.http_port = 9092
    /services/inventory/environment/OMS_INVENTORY__HTTP_PORT = "9092"
services.customer.volumes: mounts creds-payment: it could read payment's seed
    /services/customer/volumes = ["creds-payment:/creds:ro"]
services.order.volumes: mount creds-order read-only (:ro)
    /services/order/volumes = ["creds-order:/creds"]
services.edge.environment.OMS_AUTH__HS256_SECRET: a secret written in the file
    /services/edge/environment/OMS_AUTH__HS256_SECRET = "0123456789abcdef"
services.inventory.environment.OMS_INVENTORY__DATABASE_URL: a password written in a URL
    /services/inventory/environment/OMS_INVENTORY__DATABASE_URL = "postgres://oms_inventory:x@postgres/oms_inventory"
services.customer.command: 'oms-custmer' is not a workspace binary (
    /services/customer/command = ["oms-custmer"]
services.nats-3.volumes: named volume 'nats-9' is not declared
    /services/nats-3/volumes = ["nats-3:/data", "nats-9:/more"]
volumes.spare: declared but not mounted
    /volumes/spare = null
services.payment.depends_on: 'natz-1' is not a service of this file
    /services/payment/depends_on = ["natz-1"]
services.grafana.volumes: mounts creds-prometheus: it could read prometheus's secrets
    /services/grafana/volumes = ["creds-prometheus:/run/oms-secrets:ro", "grafana:/var/lib/grafana"]
services.prometheus.volumes: ./ops/prometheuz is not in the repository
    /services/prometheus/volumes = ["./ops/prometheuz:/etc/prometheus:ro", "creds-prometheus:/run/oms-secrets:ro"]
services.prometheus.ops/prometheus/prometheus.yml: scrapes no order:9094 (order's /metrics)
    /services/order/environment/OMS_ORDER__HTTP_PORT = "9094"
services.prometheus.volumes: ops/prometheus/prometheus.yml reads /run/oms-secrets/metrics.token: mount there, read-only, the volume the secrets one-shot fills for prometheus
    /services/prometheus/volumes = ["./ops/prometheus:/etc/prometheus:ro", "creds-grafana:/run/oms-secrets:ro"]
services.grafana.volumes: the dashboards folder /etc/oms/dashboards is no repository folder
    /services/grafana/volumes = ["./ops/grafana/provisioning:/etc/grafana/provisioning:ro", "./ops/grafana:/etc/oms/dashboards:ro"]
schema: services.edge: unknown key 'helthcheck' (not in the Compose schema)
    /services/edge/helthcheck = {}
schema: services.edge.depends_on.order.condition: "service_helthy" is not one of
    /services/edge/depends_on/order = {"condition": "service_helthy"}
"#;

    #[test]
    fn broken_copies_are_refused() {
        let lines: Vec<&str> = CASES.trim().lines().collect();
        let mut wrong = Vec::new();
        for case in lines.chunks(2) {
            let (expected, edit) = (case[0], case[1].trim());
            let (pointer, value) = match edit.strip_prefix('-') {
                Some(pointer) => (pointer, None),
                None => {
                    let (pointer, json) = edit.split_once(" = ").expect("POINTER = JSON");
                    (
                        pointer,
                        Some(serde_json::from_str(json).expect("the edit's JSON")),
                    )
                }
            };
            let problems = check(&edited(pointer, value));
            if !problems.iter().any(|p| p.contains(expected)) {
                wrong.push(format!(
                    "expected {expected:?}, got:\n    {}",
                    problems.join("\n    ")
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn interpolation_takes_the_defaults_and_merge_keys_merge() {
        let mut doc = json!({"a": "${OMS_LOG:-info}", "b": "${X:?needed}/$$HOME/${Y}/$Z/${W-x}"});
        interpolate(&mut doc);
        assert_eq!(doc, json!({"a": "info", "b": "/$HOME///x"}));
        // A merged mapping's own `<<` counts too.
        let doc = load_compose("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, y: 3}\n").unwrap();
        assert_eq!(doc["c"], json!({"x": 1, "y": 3}));
    }
}

/// The secrets one-shot, run for real (twice, as at two `up`s) with the binaries cargo built: in
/// a private mount namespace whose tmpfs mounts stand for the volumes compose gives it. Each
/// recipient gets its own and no more; the services get the public JWKS, not the HS256 key with
/// which they could mint a token, and Prometheus's token is one that JWKS accepts.
#[test]
fn the_secrets_one_shot_gives_each_recipient_its_own() {
    use oms_edge::auth::{Caller, Verifier};
    let bin = std::env::current_exe().expect("the test's path");
    let bin = bin
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    for tool in ["oms-provision", "oms-token"] {
        assert!(
            bin.join(tool).exists(),
            "{} is missing: run `cargo build --workspace --all-targets` first",
            bin.join(tool).display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let recipients = [
        "edge",
        "customer",
        "payment",
        "provisioner",
        "postgres",
        "prometheus",
    ];
    let volumes: Vec<String> = ["secrets", "nats-auth"]
        .iter()
        .map(|v| v.to_string())
        .chain(recipients.iter().map(|r| format!("out/{r}")))
        .collect();
    for volume in &volumes {
        std::fs::create_dir_all(dir.path().join(volume)).unwrap();
    }
    // Run inside the namespace, then copy what was made out of its tmpfs mounts.
    let script = format!(
        r#"set -euo pipefail
for v in {volumes}; do mount -t tmpfs tmpfs "$v"; done
bash "$MAKER" 2>/dev/null
bash "$MAKER"
mkdir -p kept && cp -a secrets out kept/"#,
        volumes = volumes.join(" ")
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "bash", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("MAKER", root().join("compose").join(SECRETS_MAKER))
        .env("OMS_CONFIG", root().join("oms.toml"))
        .env("OMS_PROFILE", "docker")
        .env("SECRETS_DIR", dir.path().join("secrets"))
        .env("OUT_DIR", dir.path().join("out"))
        .env("NATS_BASE_CONFIG", "/etc/nats/nats-cluster.conf")
        .env(
            "NATS_SERVER_CONFIG",
            dir.path().join("nats-auth/nats-server.conf"),
        )
        .env("POSTGRES_ROLES", "postgres oms_customer")
        .env("JWT_VERIFIERS", "edge customer payment")
        .output()
        .expect("unshare runs (util-linux)");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the one-shot failed:\n{log}");

    let kept = dir.path().join("kept");
    let files = |recipient: &str| -> BTreeSet<String> {
        std::fs::read_dir(kept.join("out").join(recipient))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let set = |names: &[&str]| BTreeSet::from_iter(names.iter().map(|n| n.to_string()));
    assert_eq!(
        files("edge"),
        set(&["edge.nk", "edge-jwt.secret", "edge-jwks.json"])
    );
    assert_eq!(
        files("customer"),
        set(&["customer.nk", "edge-jwks.json", "pgpass"])
    );
    assert_eq!(files("payment"), set(&["payment.nk", "edge-jwks.json"]));
    assert_eq!(files("provisioner"), set(&["provisioner.nk"]));
    assert_eq!(
        files("postgres"),
        set(&["postgres.password", "oms_customer.password"])
    );
    assert_eq!(files("prometheus"), set(&["metrics.token"]));

    let read_kept = |path: &str| std::fs::read_to_string(kept.join(path)).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&read_kept("out/customer/edge-jwks.json")).unwrap();
    assert!(
        !read_kept("out/customer/edge-jwks.json").contains("\"d\""),
        "public keys only"
    );
    let token = read_kept("out/prometheus/metrics.token");
    let auth = oms_config::AuthConfig::default();
    let services = Verifier::new(&auth, None, Some(&jwks));
    assert_eq!(
        services.verify(token.trim()),
        Ok(Caller::operator("prometheus"))
    );
    let secret = read_kept("out/edge/edge-jwt.secret");
    let edge_secret_only = Verifier::new(&auth, Some(secret.trim().as_bytes()), None);
    assert!(
        edge_secret_only.verify(token.trim()).is_err(),
        "signed with the ES256 key, not the HS256 one"
    );
}
