//! Faults the lab did not switch on: each is caused from outside, as a
//! colleague at a psql prompt or an operator at a shell would, on a fresh
//! native lab, and the first verdict `lab diagnose` names (its default
//! window, as a learner runs it) must be the cause with the right culprit:
//! the component whose state explains the evidence. A lab whose tables
//! hold what a day of traffic leaves must stay healthy meanwhile.

use std::process::Command;
use std::time::Duration;

use lab_testkit::{Down, LabCli};
use serde_json::Value;

/// A fresh lab, healthy before anything is done to it.
fn fresh(dir: &std::path::Path, name: &str) -> LabCli {
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.join(name));
    lab.ok(&["up", "--runtime", "native"]);
    if let Err(last) = lab.diagnose_until(
        || "1m".to_owned(),
        Duration::from_secs(30),
        |r| r["status"] == "healthy",
    ) {
        panic!("{name}: the fresh lab did not read healthy: {last:#}");
    }
    lab
}

/// Loads `count` distinct names of the requester's shape into `table`, as
/// a colleague's `\copy` would.
fn fill(lab: &LabCli, dir: &std::path::Path, table: &str, count: usize) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(count as u64);
    let mut names = std::collections::BTreeSet::new();
    while names.len() < count {
        names.insert(mythical_services::requester::random_name(&mut rng));
    }
    let file = dir.join(format!("{table}-names.csv"));
    let text: String = names.into_iter().map(|n| n + "\n").collect();
    std::fs::write(&file, text).unwrap();
    // A name the running requester wrote meanwhile fails the copy: a copy
    // into a temporary table first, then only the names not there yet.
    lab.psql(&format!(
        "CREATE TABLE IF NOT EXISTS filling_{table} (name text)"
    ));
    lab.psql(&format!(
        "\\copy filling_{table}(name) FROM '{}'",
        file.display()
    ));
    // Ten thousand at a time: one long transaction would make the
    // requester's own inserts of the same names wait on it.
    for offset in (0..count).step_by(10_000) {
        lab.psql(&format!(
            "INSERT INTO {table}(name) SELECT name FROM filling_{table} ORDER BY name OFFSET {offset} LIMIT 10000 ON CONFLICT (name) DO NOTHING"
        ));
    }
    lab.psql(&format!("DROP TABLE filling_{table}"));
}

/// The first verdict that names a cause must be `id`, blaming `culprit`.
fn first_verdict_is(lab: &LabCli, case: &str, id: &str, culprit: &str) -> Value {
    let report = lab
        .first_verdict(Duration::from_secs(40))
        .unwrap_or_else(|last| panic!("{case}: no verdict within 40 s; last: {last:#}"));
    let named = &report["root_cause"];
    assert_eq!(
        (named["id"].as_str(), named["service"].as_str()),
        (Some(id), Some(culprit)),
        "{case}: the first verdict was not {id} by {culprit}: {report:#}"
    );
    report
}

#[test]
fn a_schema_changed_by_hand_is_blamed_on_postgres_not_the_server() {
    let dir = tempfile::tempdir().unwrap();

    // A CHECK that refuses every name the requester sends.
    let lab = fresh(dir.path(), "check");
    let down = Down(&lab);
    lab.psql("ALTER TABLE owlbear ADD CONSTRAINT short_names CHECK (length(name) < 3) NOT VALID");
    let report = first_verdict_is(&lab, "check", "schema-change", "postgres");
    let summary = report["root_cause"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("owlbear.name") && summary.contains("short_names"),
        "{summary}"
    );
    assert!(
        report["root_cause"]["message"]
            .as_str()
            .unwrap()
            .contains(r#"violates check constraint "short_names""#),
        "{report:#}"
    );
    let database = report["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["signal"] == "database")
        .unwrap_or_else(|| panic!("no catalogue evidence: {report:#}"));
    assert!(
        database["finding"]
            .as_str()
            .unwrap()
            .contains("short_names"),
        "{database:#}"
    );
    drop(down);

    // The name column shrunk below the names the requester sends.
    let lab = fresh(dir.path(), "shrink");
    let _down = Down(&lab);
    lab.psql("TRUNCATE unicorn; ALTER TABLE unicorn ALTER COLUMN name TYPE varchar(4)");
    let report = first_verdict_is(&lab, "shrink", "schema-change", "postgres");
    let summary = report["root_cause"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("unicorn.name") && summary.contains("at most 4 characters"),
        "{summary}"
    );
}

/// Continues a stopped process group whatever the test does, so `lab
/// down` can stop it.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        // SAFETY: a signal to a process group the lab started; no memory.
        unsafe { libc::kill(-self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_postgres_stopped_by_a_signal_is_the_database_down() {
    let dir = tempfile::tempdir().unwrap();
    let lab = fresh(dir.path(), "stopped");
    let _down = Down(&lab);
    // Postgres leads its own process group (its backends are in it): all
    // of it stops, as a paused machine would, and none of it exits.
    let pid = lab.component("postgres")["pid"]
        .as_i64()
        .expect("postgres has a pid") as i32;
    let _continue = Continue(pid);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(-pid, libc::SIGSTOP) }, 0);
    first_verdict_is(&lab, "stopped", "db-down", "postgres");
}

/// Ends a background psql session whatever the test does.
struct Session(std::process::Child);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn another_sessions_lock_is_blamed_on_postgres_and_names_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let lab = fresh(dir.path(), "locked");
    let _down = Down(&lab);
    let url = lab.component("postgres")["endpoints"]["postgres"]
        .as_str()
        .unwrap()
        .to_owned();
    let bindir = mythical_storage::binaries::find_bindir().unwrap();
    // A colleague's migration that holds owlbear and forgets to commit.
    let _session = Session(
        Command::new(bindir.join("psql"))
            .args(["-At", "-d", &url, "-c"])
            .arg("BEGIN; LOCK TABLE owlbear IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let report = first_verdict_is(&lab, "locked", "slow-query", "postgres");
    let said = report.to_string();
    assert!(
        said.contains("owlbear") && said.contains("LOCK TABLE owlbear"),
        "{report:#}"
    );
}

#[test]
fn a_server_stopped_by_a_signal_is_blamed_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let lab = fresh(dir.path(), "server-stopped");
    let _down = Down(&lab);
    let pid = lab.component("mythical-server")["pid"]
        .as_i64()
        .expect("the server has a pid") as i32;
    let _continue = Continue(pid);
    // SAFETY: a signal to a process group the lab started; no memory.
    assert_eq!(unsafe { libc::kill(-pid, libc::SIGSTOP) }, 0);
    let report = first_verdict_is(&lab, "server-stopped", "service-crash", "mythical-server");
    let summary = report["root_cause"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("paused") && summary.contains("answers none"),
        "{summary}"
    );
}

#[test]
fn a_day_of_names_in_the_tables_leaves_the_lab_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let lab = fresh(dir.path(), "after-hours");
    let _down = Down(&lab);
    // The beast never deleted holds about a tenth of the names the
    // requester draws, the others fewer: new names collide now and then.
    fill(&lab, dir.path(), "unicorn", 30_000);
    for table in ["manticore", "illithid", "owlbear", "beholder"] {
        fill(&lab, dir.path(), table, 8_000);
    }
    // Every verdict for the next 40 s: no cause named, ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut reports = 0;
    while std::time::Instant::now() < deadline {
        let out = lab.run(&["diagnose", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "diagnose --json: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            report["root_cause"].is_null(),
            "a healthy lab with full tables was given a cause: {report:#}"
        );
        reports += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(reports >= 10, "{reports} reports");
}

#[test]
fn a_table_filled_by_hand_is_blamed_on_its_data_not_the_requester() {
    let dir = tempfile::tempdir().unwrap();
    let lab = fresh(dir.path(), "crowded");
    let _down = Down(&lab);
    // Four of five names the requester can draw are taken: most POSTs to
    // unicorn fail, the requester repeating nothing.
    fill(&lab, dir.path(), "unicorn", 250_000);
    let report = first_verdict_is(&lab, "crowded", "table-crowded", "postgres");
    let summary = report["root_cause"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("unicorn holds "), "{summary}");
}
