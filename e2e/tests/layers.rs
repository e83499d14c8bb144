//! The crate layers drawn in ARCHITECTURE.md hold: no workspace crate depends on a crate of a
//! higher layer, no service depends on another service, and the dependencies (dev ones
//! included) have no cycle. The drawing is read from ARCHITECTURE.md itself, so the page and
//! the manifests cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const ARCHITECTURE: &str = include_str!("../../ARCHITECTURE.md");

/// The layer drawing: the fenced block under "## Crates and layers", one line per row, each
/// starting with its layer's number, then crate names (with or without their `oms-` prefix),
/// then a description. Returns each drawn crate's layer (by package name) and the services
/// (the first row of layer 4).
fn drawing(packages: &BTreeSet<String>) -> (BTreeMap<String, u32>, BTreeSet<String>) {
    let section = ARCHITECTURE
        .split("## Crates and layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a section 'Crates and layers'");
    let block = section
        .split("```")
        .nth(1)
        .expect("that section draws the layers in a fenced block");
    let package = |name: &str| {
        [name.to_string(), format!("oms-{name}")]
            .into_iter()
            .find(|p| packages.contains(p))
    };
    let (mut layers, mut services) = (BTreeMap::new(), BTreeSet::new());
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let layer: u32 = words
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a row starts with its layer's number: {line:?}"));
        let names: Vec<String> = words.map_while(package).collect();
        assert!(!names.is_empty(), "a row names a crate: {line:?}");
        if layer == 4 && services.is_empty() {
            services.extend(names.iter().cloned());
        }
        layers.extend(names.into_iter().map(|n| (n, layer)));
    }
    (layers, services)
}

/// Every workspace crate and the workspace crates it depends on (normal, build and dev).
fn manifests() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("a name").to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| d["name"].as_str().expect("a name").to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().expect("a name").to_string(), deps)
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_its_own_or_lower_layers_and_no_service_on_another() {
    let crates = manifests();
    let (layers, services) = drawing(&crates.keys().cloned().collect());
    assert_eq!(
        services.len(),
        5,
        "the drawing's first row of layer 4 names the five services: {services:?}"
    );
    let mut wrong = Vec::new();
    for (package, deps) in &crates {
        let Some(&layer) = layers.get(package) else {
            wrong.push(format!("{package} is not in ARCHITECTURE.md's drawing"));
            continue;
        };
        for dep in deps {
            let dep_layer = layers.get(dep).copied().unwrap_or(u32::MAX);
            if dep_layer > layer {
                wrong.push(format!(
                    "{package} (layer {layer}) depends on {dep} (layer {dep_layer})"
                ));
            }
            if services.contains(package) && services.contains(dep) {
                wrong.push(format!("service {package} depends on service {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_dependencies_between_workspace_crates_have_no_cycle() {
    let crates = manifests();
    // Depth-first search; a crate met again while on the path closes a cycle.
    fn visit<'a>(
        node: &'a str,
        crates: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), String> {
        if done.contains(node) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|p| *p == node) {
            return Err(format!("{} -> {node}", path[at..].join(" -> ")));
        }
        path.push(node);
        for dep in &crates[node] {
            visit(dep, crates, path, done)?;
        }
        path.pop();
        done.insert(node);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for name in crates.keys() {
        if let Err(cycle) = visit(name, &crates, &mut Vec::new(), &mut done) {
            panic!("a dependency cycle: {cycle}");
        }
    }
    assert_eq!(done.len(), crates.len(), "every crate was visited");
}
