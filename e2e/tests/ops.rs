//! ops/ against the README: every `oms_*` metric that the Grafana dashboards
//! (ops/grafana/dashboards/*.json) and the Prometheus alert rules (ops/prometheus/alerts.yml and
//! their unit tests) use is a row of the README's "Metrics" table, with the labels that row gives
//! it, so the table, the dashboards and the rules cannot drift apart. The table is the one list of
//! names: the services must export each of them.
//!
//! Also the shape of what Grafana and Prometheus load: each panel queries the provisioned data
//! source, each alert has a `for:`, a severity, a summary and a description, is unit-tested
//! firing in alerts.test.yml, and is explained in the README. The PromQL itself is parsed by
//! promtool in scripts/check-ops.sh.

use oms_e2e::{workspace_file as read, workspace_root as root};
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Labels every scraped series gets from its target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// The suffixes of a histogram's series, and the label of its buckets.
const HISTOGRAM_SERIES: [&str; 3] = ["_bucket", "_sum", "_count"];

const SEVERITIES: [&str; 2] = ["critical", "warning"];

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- the README's table ----

#[derive(Debug)]
struct Metric {
    /// counter, gauge or histogram.
    kind: String,
    labels: BTreeSet<String>,
}

type Metrics = BTreeMap<String, Metric>;

/// The rows of the first table under `## Metrics`: `` | `name` | type | `label`, ... | meaning | ``.
fn parse_metrics_table(readme: &str) -> Result<Metrics, String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Metrics\n"))
        .ok_or("no section \"## Metrics\"")?;
    let rows = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2); // the header and its |---| line
    let mut metrics = Metrics::new();
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [name, kind, labels, meaning] = cells[..] else {
            return Err(format!("not 4 cells: {row}"));
        };
        let name = name.trim_matches('`');
        if !name.starts_with("oms_") || !name.chars().all(is_name_char) {
            return Err(format!("not a metric name: {name:?} in {row}"));
        }
        if !["counter", "gauge", "histogram"].contains(&kind) {
            return Err(format!(
                "{name}: type {kind:?} is not counter, gauge or histogram"
            ));
        }
        if meaning.is_empty() {
            return Err(format!("{name}: no meaning"));
        }
        let labels = labels
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string());
        let metric = Metric {
            kind: kind.into(),
            labels: labels.filter(|l| !l.is_empty()).collect(),
        };
        if metrics.insert(name.into(), metric).is_some() {
            return Err(format!("{name}: two rows"));
        }
    }
    if metrics.is_empty() {
        return Err("the Metrics section has no table of oms_ metrics".into());
    }
    Ok(metrics)
}

fn readme_metrics() -> Metrics {
    parse_metrics_table(&read("README.md")).unwrap_or_else(|e| panic!("README.md, Metrics: {e}"))
}

// ---- PromQL, as far as names and labels go ----

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The `oms_*` metric names an expression (or a series selector) mentions, in order.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(i) = expr[from..].find("oms_").map(|i| from + i) {
        let len = expr[i..]
            .find(|c| !is_name_char(c))
            .unwrap_or(expr.len() - i);
        // Not the tail of another word (`xoms_a`).
        if !expr[..i].chars().next_back().is_some_and(is_name_char) {
            names.push(expr[i..i + len].to_string());
        }
        from = i + len;
    }
    names
}

/// The expression with every quoted string emptied (label values, regexes).
fn without_strings(expr: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The labels listed after these keywords: `by (a, b)`, `without (...)`, `on (...)`, ...
fn clause_labels(expr: &str, keywords: &[&str]) -> BTreeSet<String> {
    let expr = without_strings(expr);
    let mut labels = BTreeSet::new();
    for word in keywords {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find(word) {
            let prev = rest[..i].chars().last().unwrap_or(' ');
            let after = rest[i + word.len()..].trim_start();
            if !is_name_char(prev)
                && let Some(list) = after.strip_prefix('(')
            {
                let list = &list[..list.find(')').unwrap_or(list.len())];
                labels.extend(list.split(',').map(str::trim).map(String::from));
            }
            rest = &rest[i + word.len()..];
        }
    }
    labels.retain(|l| !l.is_empty());
    labels
}

/// The label names an expression uses: in `by (...)`, `without (...)`, `on (...)`,
/// `ignoring (...)`, `group_left (...)`, `group_right (...)` and in `{name op "value", ...}`.
fn label_names(expr: &str) -> BTreeSet<String> {
    let words = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut labels = clause_labels(expr, &words);
    let expr = without_strings(expr);
    let mut rest = expr.as_str();
    while let Some(i) = rest.find('{') {
        let inner = &rest[i + 1..];
        let end = inner.find('}').unwrap_or(inner.len());
        for matcher in inner[..end].split(',') {
            let name = matcher.split(['=', '!']).next().unwrap_or("").trim();
            labels.insert(name.to_string());
        }
        rest = &inner[end..];
    }
    labels.retain(|l| !l.is_empty());
    labels
}

/// What is wrong with the names and labels of one expression, for the table `known`.
fn expr_problems(expr: &str, known: &Metrics) -> Vec<String> {
    let mut problems = Vec::new();
    let mut allowed: BTreeSet<String> = TARGET_LABELS.map(String::from).into();
    let names = metric_names(&without_strings(expr));
    for name in &names {
        if let Some(metric) = known.get(name) {
            if metric.kind == "histogram" {
                problems.push(format!(
                    "{name} is a histogram: query {name}_bucket, _sum or _count"
                ));
            }
            allowed.extend(metric.labels.iter().cloned());
            continue;
        }
        let histogram = HISTOGRAM_SERIES.iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            Some((*suffix, base, known.get(base)?))
        });
        match histogram {
            Some((suffix, _, metric)) if metric.kind == "histogram" => {
                allowed.extend(metric.labels.iter().cloned());
                if suffix == "_bucket" {
                    allowed.insert("le".into());
                }
            }
            Some((_, base, metric)) => problems.push(format!(
                "{name}: {base} is a {}, not a histogram",
                metric.kind
            )),
            None => problems.push(format!("{name} is not in the README's Metrics table")),
        }
    }
    // Labels are checked where the expression is about OMS metrics (not e.g. `up`).
    if !names.is_empty() {
        for label in label_names(expr) {
            if !allowed.contains(&label) {
                let all = Vec::from_iter(allowed.iter().map(String::as_str)).join(", ");
                problems.push(format!("label {label} is not one of its metrics' ({all})"));
            }
        }
    }
    problems
}

// ---- what Grafana and Prometheus load ----

/// Every panel, rows' own panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'v>(list: &'v Value, out: &mut Vec<&'v Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn dashboard_files() -> Vec<String> {
    let dir = root().join("ops/grafana/dashboards");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<String> = entries
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".json"))
        .map(|name| format!("ops/grafana/dashboards/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());
    files
}

fn alert_rules() -> Vec<Value> {
    let rules = yaml("ops/prometheus/alerts.yml");
    let groups = rules["groups"].as_array().expect("alerts.yml: groups");
    let rules = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone());
    rules.collect()
}

/// Every expression of ops/, with where it is: panel queries, alert rules, the rules' test series.
fn expressions() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for file in dashboard_files() {
        let dashboard = json(&file);
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let title = panel["title"].as_str().unwrap_or("?");
                let expr = target["expr"].as_str().unwrap_or("").to_string();
                exprs.push((format!("{file}: panel {title:?}"), expr));
            }
        }
    }
    for rule in alert_rules() {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or("?");
        let expr = rule["expr"].as_str().unwrap_or("").to_string();
        exprs.push((format!("ops/prometheus/alerts.yml: {name}"), expr));
    }
    let tests = yaml("ops/prometheus/alerts.test.yml");
    for test in tests["tests"].as_array().expect("alerts.test.yml: tests") {
        for input in test["input_series"].as_array().into_iter().flatten() {
            let series = input["series"].as_str().unwrap_or("").to_string();
            exprs.push(("ops/prometheus/alerts.test.yml: series".into(), series));
        }
    }
    exprs
}

// ---- the tests ----

#[test]
fn dashboards_and_alerts_use_only_the_metrics_of_the_readme() {
    let known = readme_metrics();
    let mut problems = Vec::new();
    for (at, expr) in expressions() {
        assert!(!expr.trim().is_empty(), "{at}: no expression");
        problems.extend(
            expr_problems(&expr, &known)
                .into_iter()
                .map(|p| format!("{at}: {p}")),
        );
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
    // The dashboards show everything the services export.
    let dashboards: BTreeSet<String> = (expressions().into_iter())
        .filter(|(at, _)| at.starts_with("ops/grafana/"))
        .flat_map(|(_, expr)| metric_names(&without_strings(&expr)))
        .map(|n| base_name(&n, &known))
        .collect();
    let unshown = Vec::from_iter(known.keys().filter(|n| !dashboards.contains(*n)));
    assert!(unshown.is_empty(), "metrics on no dashboard: {unshown:?}");
}

/// A histogram's series (`_bucket`, `_sum`, `_count`) map to the histogram.
fn base_name(name: &str, known: &Metrics) -> String {
    HISTOGRAM_SERIES
        .iter()
        .find_map(|s| name.strip_suffix(s).filter(|b| known.contains_key(*b)))
        .unwrap_or(name)
        .to_string()
}

#[test]
fn the_metrics_table_follows_the_conventions() {
    let known = readme_metrics();
    // Every series says which service exports it; counters end in _total, nothing else does.
    for (name, metric) in &known {
        assert!(
            metric.labels.contains("service"),
            "{name}: no label service"
        );
        let suffix_ok = match metric.kind.as_str() {
            "counter" => name.ends_with("_total"),
            _ => !name.ends_with("_total"),
        };
        assert!(
            suffix_ok,
            "{name}: a {} named against the conventions",
            metric.kind
        );
    }
}

#[test]
fn panels_query_the_provisioned_prometheus() {
    let sources = yaml("ops/grafana/provisioning/datasources/prometheus.yml");
    let source = &sources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    let uid = source["uid"].as_str().expect("the data source has a uid");
    for file in dashboard_files() {
        let dashboard = json(&file);
        assert!(dashboard["uid"].is_string(), "{file}: no uid");
        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("?");
            let at = format!("{file}: panel {title:?}");
            assert!(ids.insert(panel["id"].to_string()), "{at}: id used twice");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
            assert!(
                matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
                "{at}: gridPos outside Grafana's 24 columns"
            );
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{at}: no query"));
            // A legend shows labels that the query keeps.
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or("");
                let kept = clause_labels(expr, &["by"]);
                let legend = target["legendFormat"].as_str().unwrap_or("");
                let shown = legend
                    .split("{{")
                    .skip(1)
                    .filter_map(|s| s.split_once("}}"));
                for label in shown.map(|(label, _)| label.trim()) {
                    assert!(
                        kept.contains(label),
                        "{at}: the legend shows {label}, which {expr:?} does not keep (by ...)"
                    );
                }
            }
            for source in targets
                .iter()
                .map(|t| &t["datasource"])
                .chain([&panel["datasource"]])
            {
                assert_eq!(source["uid"], uid, "{at}: not the data source {uid}");
            }
        }
    }
}

#[test]
fn every_alert_is_complete_tested_and_documented() {
    let readme = read("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Dashboards and alerts\n"))
        .expect("README.md: a section \"## Dashboards and alerts\"");
    let tests = yaml("ops/prometheus/alerts.test.yml");
    let mut tested = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests") {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                tested.insert(case["alertname"].as_str().unwrap_or("").to_string());
            }
        }
    }
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for rule in alert_rules() {
        let Some(name) = rule["alert"].as_str() else {
            continue;
        };
        let mut add = |p: &str| problems.push(format!("{name}: {p}"));
        if !names.insert(name.to_string()) {
            add("two rules of this name");
        }
        if !rule["for"].is_string() {
            add("no `for:`");
        }
        if !SEVERITIES.iter().any(|s| rule["labels"]["severity"] == *s) {
            add("labels.severity is not critical or warning");
        }
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str();
            if text.is_none_or(|s| s.trim().is_empty()) {
                add(&format!("no annotation {annotation}"));
            }
        }
        if !tested.contains(name) {
            add("alerts.test.yml has no case where it fires (exp_alerts)");
        }
        if !section.contains(&format!("`{name}`")) {
            add("not explained in the README's \"Dashboards and alerts\"");
        }
    }
    assert!(!names.is_empty(), "alerts.yml has no alert");
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// The checks above find what they are for.
mod refused {
    use super::*;

    fn table() -> Metrics {
        let readme = "\n## Metrics\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n\
            | `oms_a_total` | counter | `service`, `consumer` | a |\n\
            | `oms_b_seconds` | histogram | `service`, `route` | b |\n\
            | `oms_c` | gauge | `service` | c |\n\n## Next\n";
        parse_metrics_table(readme).expect("the table parses")
    }

    #[test]
    fn the_table_parses() {
        let known = table();
        assert_eq!(
            Vec::from_iter(known.keys()),
            ["oms_a_total", "oms_b_seconds", "oms_c"]
        );
        assert_eq!(known["oms_b_seconds"].kind, "histogram");
        assert_eq!(
            Vec::from_iter(&known["oms_a_total"].labels),
            ["consumer", "service"]
        );
        assert!(parse_metrics_table("## Metrics\nno table\n").is_err());
        let bad_type =
            "\n## Metrics\n| m | t | l | x |\n|-|-|-|-|\n| `oms_x` | summary | `service` | x |\n";
        assert!(
            parse_metrics_table(bad_type)
                .unwrap_err()
                .contains("summary")
        );
    }

    #[test]
    fn known_names_and_labels_pass() {
        let known = table();
        let ok = [
            r#"sum by (consumer) (rate(oms_a_total{service="x"}[5m]))"#,
            "histogram_quantile(0.99, sum by (le, route) (rate(oms_b_seconds_bucket[1m])))",
            "sum(rate(oms_b_seconds_sum[1m])) / sum(rate(oms_b_seconds_count[1m]))",
            r#"max(oms_c{job="oms", instance=~"order:.*"}) > 0"#,
            // A label value that looks like a name is a value.
            r#"oms_c{service="oms_nothing"}"#,
            r#"up{job="oms"} == 0"#,
        ];
        for expr in ok {
            assert_eq!(expr_problems(expr, &known), Vec::<String>::new(), "{expr}");
        }
    }

    #[test]
    fn unknown_names_and_labels_are_refused() {
        let known = table();
        let refused = [
            (
                "rate(oms_d_total[5m])",
                "oms_d_total is not in the README's Metrics table",
            ),
            (
                "rate(oms_a_totl[5m])",
                "oms_a_totl is not in the README's Metrics table",
            ),
            ("oms_b_seconds", "oms_b_seconds is a histogram"),
            ("rate(oms_c_count[5m])", "oms_c is a gauge, not a histogram"),
            (
                "sum by (route) (rate(oms_a_total[5m]))",
                "label route is not one of",
            ),
            (
                "sum by (le) (rate(oms_a_total[5m]))",
                "label le is not one of",
            ),
            (r#"oms_c{status="PENDING"}"#, "label status is not one of"),
            (
                "max without (consumer) (oms_c)",
                "label consumer is not one of",
            ),
        ];
        for (expr, expected) in refused {
            let problems = expr_problems(expr, &known);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expr}: expected {expected:?}, got {problems:?}"
            );
        }
    }
}
