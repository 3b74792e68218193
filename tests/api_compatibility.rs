//! COMPATIBILITY.md is the list of everything the lab asks of Tempo, Loki,
//! Mimir, Pyroscope, Alloy and Grafana, each with the pinned release that
//! serves it and where in that release's source. This test keeps the list
//! whole: every backend route written in the lab's and the services' code,
//! and every query-language feature used by a built-in scenario or by a
//! query in the lab's code, must have its row; and every row's route must
//! still be called (or be marked as a library's).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code that calls backends: the lab (its console, diagnose, guide,
/// runtimes) and the services (their exporters and profile pushes).
fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("lab/src"), &mut files);
    rust_files(&root().join("services/src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = read(&f);
            (f, text)
        })
        .collect()
}

/// The table's cells, row by row, for tables whose header starts with
/// `first`.
fn table(doc: &str, first: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            inside = false;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect();
        if cells[0] == first {
            inside = true;
            continue;
        }
        if inside && !cells[0].starts_with("---") {
            rows.push(cells);
        }
    }
    rows
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').replace("\\|", "|")
}

fn doc() -> String {
    read(&root().join("COMPATIBILITY.md"))
}

/// Backend routes in string literals: a path under one of the backends'
/// APIs, placeholders (`{trace_id}`) as written.
fn routes_in_code() -> BTreeSet<(String, String)> {
    let route = Regex::new(
        r#""[^"\n]*?((?:/api/|/loki/api/|/pyroscope/|/prometheus/|/otlp/|/ingest|/push\.v1\.|/v1/(?:traces|logs|metrics)|/-/ready|/ready|/explore|/d/)[A-Za-z0-9_./{}:-]*)"#,
    )
    .unwrap();
    let mut found = BTreeSet::new();
    for (file, text) in sources() {
        let relative = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        // Unit tests sit at a file's end; their strings call nothing.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for capture in route.captures_iter(code) {
            let route = &capture[1];
            // A config file's path inside a container, not an API.
            if [".yaml", ".yml", ".json", ".alloy"]
                .iter()
                .any(|e| route.ends_with(e))
            {
                continue;
            }
            found.insert((route.to_owned(), relative.clone()));
        }
    }
    found
}

#[test]
fn every_backend_route_the_code_calls_has_a_row_with_its_release_and_source() {
    let doc = doc();
    let rows = table(&doc, "route");

    let listed: BTreeSet<String> = rows.iter().map(|r| unquote(&r[0])).collect();
    let mut missing = Vec::new();
    let mut called = BTreeSet::new();
    for (route, file) in routes_in_code() {
        called.insert(route.clone());
        if !listed.contains(&route) {
            missing.push(format!("{route} (in {file})"));
        }
    }
    assert!(
        rows.len() >= 10,
        "COMPATIBILITY.md's route table is missing or short"
    );
    assert!(
        missing.is_empty(),
        "routes the code calls that COMPATIBILITY.md does not list:\n{}",
        missing.join("\n")
    );
    for row in &rows {
        assert_eq!(row.len(), 7, "a route row has 7 cells: {row:?}");
        let route = unquote(&row[0]);
        let by_library = row[3].contains("library");
        assert!(
            by_library || called.contains(&route),
            "COMPATIBILITY.md lists {route}, which nothing in the code calls any more"
        );
        assert!(
            row[5].contains(':') || row[5].contains("n/a"),
            "{route}: give the upstream source as path:line at the pinned tag, not {:?}",
            row[5]
        );
    }
}

/// A query and its language, as the scenarios or the lab's code hold it.
fn queries() -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let scenarios = root().join("scenarios");
    for entry in std::fs::read_dir(&scenarios).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let doc: yaml_serde::Value = yaml_serde::from_str(&read(&path)).unwrap();
        for step in doc["steps"].as_sequence().into_iter().flatten() {
            let query = &step["query"];
            let (Some(language), Some(text)) = (query["language"].as_str(), query["text"].as_str())
            else {
                continue;
            };
            let language = match language {
                "traceql" => "traceql",
                "logql" => "logql",
                "promql" => "promql",
                _ => continue,
            };
            out.push((language, text.to_owned(), path.display().to_string()));
        }
    }
    // Raw string literals in the lab's code that read as a query.
    let raw = Regex::new(r##"(?s)r#"(.*?)"#"##).unwrap();
    let traceql =
        Regex::new(r"^\{ .*(span\.|resource\.|status|kind|duration|name|trace:)").unwrap();
    let logql = Regex::new(r#"^\{[a-z_]+=~?"[^"]*"[^}]*\}\s*(\||!=|\|=|\|~)"#).unwrap();
    let promql = Regex::new(r"^[a-z_]+\(|^[a-z_]+\{[a-z_]+=").unwrap();
    for (file, text) in sources() {
        if !file.starts_with(root().join("lab/src")) {
            continue;
        }
        for capture in raw.captures_iter(&text) {
            let literal = capture[1].replace("{{", "{").replace("}}", "}");
            let language = if traceql.is_match(&literal) {
                "traceql"
            } else if logql.is_match(&literal) {
                "logql"
            } else if promql.is_match(&literal) {
                "promql"
            } else {
                continue;
            };
            out.push((language, literal, file.display().to_string()));
        }
    }
    out
}

/// The features a query uses, by name as COMPATIBILITY.md writes them.
fn features(language: &str, query: &str) -> BTreeSet<String> {
    // Quoted values say nothing about the language.
    let text = Regex::new(r#""(?:[^"\\]|\\.)*""#)
        .unwrap()
        .replace_all(query, "\"\"")
        .into_owned();
    let mut out = BTreeSet::new();
    let mut add = |pattern: &str, name: &dyn Fn(&regex::Captures) -> String| {
        for capture in Regex::new(pattern).unwrap().captures_iter(&text) {
            out.insert(name(&capture));
        }
    };
    match language {
        "traceql" => {
            add(r"\}\s*(>>|>|<<|<|~|&&|\|\|)\s*\{", &|c| {
                format!("}} {} {{", &c[1])
            });
            add(r"\|\s*([a-z_]+)\(", &|c| format!("| {}()", &c[1]));
            add(
                r"\b(trace|span|event|link|instrumentation):[A-Za-z]+",
                &|c| c[0].to_owned(),
            );
            add(
                r"\b(status|kind|duration|name|statusMessage)\s*(=|!=|>|<)",
                &|c| c[1].to_owned(),
            );
            add(r"=~|!~", &|c| c[0].to_owned());
            add(r"!=\s*nil", &|_| "!= nil".into());
            add(r"(^|[\s{(])\.[a-z]", &|_| "unscoped .attribute".into());
            add(r"\bspan\.", &|_| "span.".into());
            add(r"\bresource\.", &|_| "resource.".into());
        }
        "logql" => {
            add(r"\|=|\|~|!=|!~", &|c| c[0].to_owned());
            add(
                r"\|\s*(logfmt|json|regexp|pattern|line_format|label_format|unwrap|drop|keep)\b",
                &|c| format!("| {}", &c[1]),
            );
            add(r"\|\s*[a-z_]+\s*(=|!=|=~|!~|>|<)", &|_| {
                "| label filter".into()
            });
            add(r"\b([a-z_]+_over_time|rate|bytes_rate)\(", &|c| {
                c[1].to_owned()
            });
            add(
                r"\b(sum|count|topk|bottomk|avg|max|min)\s*(by|without)?\s*\(",
                &|c| c[1].to_owned(),
            );
        }
        _ => {
            add(r"\b([a-z_]+)\s*\(", &|c| c[1].to_owned());
            add(
                r"\b(sum|count|avg|min|max|topk|bottomk|quantile|stddev|stdvar|count_values|group)\s+(by|without)\s*\(",
                &|c| c[1].to_owned(),
            );
            add(
                r"\b(by|without|offset|or|and|unless|on|ignoring|group_left|group_right)\b",
                &|c| c[1].to_owned(),
            );
        }
    }
    out.remove("by");
    out
}

#[test]
fn every_query_language_feature_the_lab_uses_has_a_row() {
    let doc = doc();
    let rows = table(&doc, "language");
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r[0].to_lowercase(), unquote(&r[1])))
        .collect();
    let found = queries();
    assert!(
        found.len() > 30,
        "the scenarios and the lab hold more queries than {}",
        found.len()
    );
    let mut missing = BTreeSet::new();
    for (language, query, place) in &found {
        for feature in features(language, query) {
            if !listed.contains(&(language.to_string(), feature.clone())) {
                missing.insert(format!("{language} `{feature}` (in {place}: {query})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "query-language features COMPATIBILITY.md does not list:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_feature_reader_sees_what_a_query_uses() {
    let f = features(
        "traceql",
        r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error && span.db.statement !~ "INSERT.*" } | select(span.db.name)"#,
    );
    for expected in ["} >> {", "| select()", "status", "!~", "span.", "resource."] {
        assert!(f.contains(expected), "{expected} in {f:?}");
    }
    let f = features(
        "logql",
        r#"sum by (beast) (count_over_time({job="alloy"} |= "x" | logfmt [1m]))"#,
    );
    for expected in ["sum", "count_over_time", "|=", "| logfmt"] {
        assert!(f.contains(expected), "{expected} in {f:?}");
    }
    let f = features(
        "promql",
        r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket{a="rate("}[1m])))"#,
    );
    assert_eq!(
        f,
        BTreeSet::from(["histogram_quantile".into(), "rate".into(), "sum".into()])
    );
}
