//! `lab logs` and `lab doctor`: what a component printed, and what this
//! machine has and lacks for the lab.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use lab::render;
use lab::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A component: postgres, backend, mythical-server, mythical-requester,
    /// or in the docker runtime also tempo, loki, mimir, pyroscope, alloy, grafana.
    pub component: String,
    /// Keep printing what it writes.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to show first.
    #[arg(long, default_value_t = 50)]
    pub tail: usize,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub json: bool,
}

pub async fn logs(state_dir: Option<PathBuf>, args: LogsArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    if let Some(lab) = state.load()?
        && lab.runtime == lab::state::Runtime::Docker
    {
        let Some(container) = lab
            .components
            .iter()
            .find(|c| c.name == args.component)
            .and_then(|c| c.container.clone())
        else {
            let known: Vec<&str> = lab.components.iter().map(|c| c.name.as_str()).collect();
            anyhow::bail!(
                "`{}` is not a component of this lab; its components are: {}",
                args.component,
                known.join(", ")
            );
        };
        let engine = lab::runtime::docker::Engine::connect().await?;
        return lab::runtime::docker::logs(&engine, &container, args.follow, args.tail).await;
    }
    let path = state.logs().join(format!("{}.log", args.component));
    if !path.exists() {
        let known: Vec<String> = std::fs::read_dir(state.logs())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".log")
                    .map(str::to_owned)
            })
            .collect();
        anyhow::bail!(
            "no log for `{}` in {}; the components with logs are: {}",
            args.component,
            state.logs().display(),
            known.join(", ")
        );
    }
    let mut file = std::fs::File::open(&path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    for line in &lines[lines.len().saturating_sub(args.tail)..] {
        writeln!(out, "{line}")?;
    }
    drop(out);
    if args.follow {
        let mut at = file.stream_position()?;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let len = std::fs::metadata(&path)?.len();
            if len < at {
                at = 0;
            }
            if len > at {
                file.seek(SeekFrom::Start(at))?;
                let mut more = String::new();
                file.read_to_string(&mut more)?;
                print!("{more}");
                std::io::stdout().flush()?;
                at = len;
            }
        }
    }
    Ok(())
}

/// One check: what, whether it is fine, and what to do if not.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: String,
}

pub async fn doctor(state_dir: Option<PathBuf>, args: DoctorArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let mut checks = Vec::new();
    match mythical_storage::binaries::find_bindir() {
        Ok(dir) => checks.push(Check {
            name: "postgresql",
            ok: true,
            detail: format!("server binaries in {}", dir.display()),
            fix: String::new(),
        }),
        Err(err) => checks.push(Check {
            name: "postgresql",
            ok: false,
            detail: err.to_string(),
            fix: "apt-get install postgresql (or brew install postgresql)".into(),
        }),
    }
    match lab::runtime::docker::Engine::connect().await {
        Ok(engine) => {
            let images = lab::runtime::docker::images::Images::resolve(state.root())?;
            let mut missing = Vec::new();
            for key in lab::runtime::docker::images::KEYS {
                if !engine.has_image(images.get(key)).await {
                    missing.push(images.get(key).to_owned());
                }
            }
            checks.push(Check {
                name: "docker",
                ok: true,
                detail: if missing.is_empty() {
                    "an engine answers and has every image".into()
                } else {
                    format!(
                        "an engine answers; missing images (pulled or built at `lab up`): {}",
                        missing.join(", ")
                    )
                },
                fix: if missing.is_empty() {
                    String::new()
                } else {
                    "offline? `lab images load <archive>` (see `lab images save`)".into()
                },
            });
        }
        Err(_) => checks.push(Check {
            name: "docker",
            ok: true,
            detail: "no engine answers: `lab up` uses the native runtime".into(),
            fix: String::new(),
        }),
    }
    for (name, port) in [
        ("port 4000", 4000u16),
        ("port 4001", 4001),
        ("port 13200", 13200),
        ("port 14317", 14317),
        ("port 14318", 14318),
        ("port 15432", 15432),
    ] {
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        checks.push(Check {
            name,
            ok: true,
            detail: if free {
                "free".into()
            } else {
                "in use: the lab will pick another free port".into()
            },
            fix: String::new(),
        });
    }
    let probe = state.root().parent().unwrap_or(state.root()).to_owned();
    let free_mb = disk_free_mb(&probe);
    checks.push(Check {
        name: "disk",
        ok: free_mb.is_none_or(|mb| mb >= 500),
        detail: free_mb.map_or("unknown".into(), |mb| {
            format!("{mb} MB free at {}", probe.display())
        }),
        fix: "free at least 500 MB, or point --state-dir elsewhere".into(),
    });
    let all_ok = checks.iter().all(|c| c.ok);
    if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| json!({ "check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "ok": all_ok, "checks": list }))?
        );
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                vec![
                    c.name.to_owned(),
                    if c.ok {
                        "ok".into()
                    } else {
                        render::red("missing")
                    },
                    c.detail.clone(),
                    c.fix.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            render::table(&["CHECK", "STATE", "DETAIL", "WHAT TO DO"], &rows)
        );
    }
    if !all_ok {
        std::process::exit(1);
    }
    Ok(())
}

fn disk_free_mb(path: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["-Pm"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}
