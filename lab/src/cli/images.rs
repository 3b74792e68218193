//! `lab images list|pull|save|load`: the docker runtime's images, and
//! carrying them to a workshop with no network in one archive.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::json;

use lab::plan::Backends;
use lab::render;
use lab::runtime::docker::{self, Engine, images::Images};
use lab::state::StateDir;

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Every image the lab uses, where its name comes from, and whether the
    /// engine has it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Pull (or build, for the lab's own image) whatever is missing.
    Pull {
        /// Only the images these backends need (default: all).
        #[arg(long, value_enum)]
        backends: Option<Backends>,
    },
    /// Write the images into one archive to carry to an offline machine.
    Save {
        archive: PathBuf,
        #[arg(long, value_enum)]
        backends: Option<Backends>,
    },
    /// Load an archive written by `lab images save`.
    Load { archive: PathBuf },
}

/// The image keys for `backends` (all when none is given).
fn keys(backends: Option<Backends>) -> Vec<&'static str> {
    match backends {
        Some(backends) => docker::image_keys(&docker::plan(backends)),
        None => docker::images::KEYS.to_vec(),
    }
}

pub async fn run(state_dir: Option<PathBuf>, command: ImagesCommand) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let images = Images::resolve(state.root())?;
    let engine = Engine::connect().await?;
    match command {
        ImagesCommand::List { json } => {
            let mut rows = Vec::new();
            for key in docker::images::KEYS {
                let image = images.get(key);
                rows.push((
                    *key,
                    image.to_owned(),
                    images.origin(key).to_owned(),
                    engine.has_image(image).await,
                ));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(key, image, origin, present)| {
                        json!({ "key": key, "image": image, "origin": origin, "present": present })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(key, image, origin, present)| {
                        vec![
                            key.to_owned(),
                            image,
                            origin,
                            if present {
                                "present".into()
                            } else {
                                render::red("missing")
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    render::table(&["KEY", "IMAGE", "FROM", "ENGINE"], &table)
                );
            }
        }
        ImagesCommand::Pull { backends } => {
            let bars = docker::progress();
            docker::ensure_images(&engine, &images, &keys(backends), &bars).await?;
            println!("every image is in the engine");
        }
        ImagesCommand::Save { archive, backends } => {
            let names: Vec<String> = keys(backends)
                .into_iter()
                .map(|k| images.get(k).to_owned())
                .collect();
            let mut missing = Vec::new();
            for name in &names {
                if !engine.has_image(name).await {
                    missing.push(name.as_str());
                }
            }
            if !missing.is_empty() {
                bail!(
                    "the engine lacks {}: run `lab images pull` first",
                    missing.join(", ")
                );
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            // Written beside the target and renamed at the end: a broken
            // save never leaves a truncated archive under the real name.
            let partial = archive.with_extension("partial");
            let mut file = std::fs::File::create(&partial)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            let mut stream = engine.docker.export_images(&refs);
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context("the engine stopped sending the images")?;
                bytes += chunk.len() as u64;
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
            std::fs::rename(&partial, &archive)?;
            println!(
                "saved {} images ({:.1} MB) to {}",
                names.len(),
                bytes as f64 / 1e6,
                archive.display()
            );
        }
        ImagesCommand::Load { archive } => {
            let file = tokio::fs::File::open(&archive)
                .await
                .with_context(|| format!("cannot read {}", archive.display()))?;
            let body = chunks(file);
            let mut stream = engine.docker.import_image_stream(
                bollard::query_parameters::ImportImageOptions::default(),
                body,
                None,
            );
            while let Some(event) = stream.next().await {
                let event = event.with_context(|| {
                    format!(
                        "the engine could not load {}: is it an archive from `lab images save`?",
                        archive.display()
                    )
                })?;
                if let Some(error) = event.error_detail.and_then(|d| d.message) {
                    bail!("loading {}: {error}", archive.display());
                }
                if let Some(line) = event.stream {
                    let line = line.trim();
                    if !line.is_empty() {
                        println!("{line}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// The file as a stream of chunks, so an archive of gigabytes never sits
/// in memory.
fn chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(bytes::Bytes::from(buffer)), Some(file)))
            }
            // The error ends the stream: the engine sees a broken body.
            Err(e) => Some((Err(e), None)),
        }
    })
}
