//! Container images for the docker runtime's tests, built through the
//! engine without a registry: the `lab` binary this build produced, and a
//! Postgres from the machine's own binaries, each packaged `FROM scratch`
//! with exactly the shared libraries `ldd` names.
//!
//! The Postgres image keeps the official image's interface — it reads
//! `POSTGRES_PASSWORD`, initialises `$PGDATA` on first start, takes
//! `postgres -c …` arguments and stops on SIGINT — so the lab runs it
//! exactly as it runs `postgres:14.5`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

/// The tag of the test image holding the `lab` binary.
pub const LAB_IMAGE: &str = "mythical-lab-test/mythical:local";
/// The tag of the test image holding the machine's Postgres.
pub const POSTGRES_IMAGE: &str = "mythical-lab-test/postgres:local";

const POSTGRES_UID: u64 = 999;

/// A build context: files under their paths in the image.
struct BuildContext {
    tar: tar::Builder<Vec<u8>>,
}

impl BuildContext {
    fn new() -> BuildContext {
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(true);
        BuildContext { tar }
    }

    fn file(&mut self, source: &Path, target: &str) -> Result<()> {
        self.tar
            .append_path_with_name(source, target.trim_start_matches('/'))
            .with_context(|| format!("cannot package {}", source.display()))
    }

    fn bytes(&mut self, target: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        self.tar
            .append_data(&mut header, target.trim_start_matches('/'), bytes)?;
        Ok(())
    }

    fn dir(&mut self, target: &str, mode: u32) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        let path = format!("{}/", target.trim_start_matches('/').trim_end_matches('/'));
        self.tar.append_data(&mut header, path, std::io::empty())?;
        Ok(())
    }

    fn tree(&mut self, source: &Path, target: &str) -> Result<()> {
        self.tar
            .append_dir_all(target.trim_start_matches('/'), source)
            .with_context(|| format!("cannot package {}", source.display()))
    }

    /// Each binary and every shared library it loads, at their own paths.
    fn binaries_with_libraries(&mut self, binaries: &[(&Path, &str)]) -> Result<()> {
        let mut libraries = BTreeSet::new();
        for (source, target) in binaries {
            self.file(source, target)?;
            libraries.extend(shared_libraries(source)?);
        }
        for library in libraries {
            let target = library.display().to_string();
            self.file(&library, &format!("rootfs{target}"))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>> {
        Ok(self.tar.into_inner()?)
    }
}

/// What `ldd` says a binary loads (the dynamic loader included).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd (Debian's libc-bin): the test images need it")?;
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

async fn build(tag: &str, context: Vec<u8>) -> Result<()> {
    let docker = Docker::connect_with_local_defaults()
        .context("no Docker engine: the docker runtime's tests need one")?
        .negotiate_version()
        .await
        .context("the Docker engine did not answer: the docker runtime's tests need one")?;
    let mut stream = docker.build_image(
        BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            ..Default::default()
        },
        None,
        Some(bollard::body_full(context.into())),
    );
    let mut log = String::new();
    while let Some(event) = stream.next().await {
        let event = event.with_context(|| format!("building {tag}"))?;
        if let Some(error) = event.error_detail.and_then(|d| d.message) {
            bail!("building {tag}: {error}\n{log}");
        }
        if let Some(line) = event.stream {
            log.push_str(&line);
        }
    }
    Ok(())
}

/// The `lab` binary without its debug sections (a quarter of the size),
/// or as it is when `objcopy` is missing.
fn slim_copy(binary: &Path, dir: &Path) -> Result<PathBuf> {
    let target = dir.join("lab");
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&target)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, &target)?;
    }
    Ok(target)
}

/// Builds [`LAB_IMAGE`] from a `lab` binary: entrypoint `lab`, so the
/// runtime's `service server`, `service requester` and `backend` commands
/// run as they would in the published image.
pub async fn build_lab_image(lab_binary: &Path) -> Result<&'static str> {
    let scratch = tempfile::tempdir()?;
    let binary = slim_copy(lab_binary, scratch.path())?;
    let mut context = BuildContext::new();
    context.binaries_with_libraries(&[(&binary, "rootfs/usr/local/bin/lab")])?;
    context.dir("rootfs/tmp", 0o1777)?;
    context.dir("rootfs/var/lib/lab-backend", 0o755)?;
    context.bytes(
        "Dockerfile",
        0o644,
        b"FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/local/bin/lab\"]\nCMD [\"service\", \"server\"]\n",
    )?;
    build(LAB_IMAGE, context.finish()?).await?;
    Ok(LAB_IMAGE)
}

/// The entrypoint: the official image's first-start initialisation, with
/// nothing but dash's builtins.
const POSTGRES_ENTRYPOINT: &str = r#"#!/bin/sh
set -e
if [ "$1" = postgres ]; then shift; fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" > /var/run/postgresql/pwfile
  initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/var/run/postgresql/pwfile \
    --auth-local=trust --auth-host=scram-sha-256 --no-locale -E UTF8 > /dev/null
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"#;

/// Builds [`POSTGRES_IMAGE`] from the machine's PostgreSQL (`bindir` as
/// `find_bindir` gives it: `/usr/lib/postgresql/<major>/bin`).
pub async fn build_postgres_image(bindir: &Path) -> Result<&'static str> {
    let root = bindir
        .parent()
        .context("PostgreSQL's bin folder has no parent")?;
    let major = root
        .file_name()
        .and_then(|n| n.to_str())
        .context("PostgreSQL's folder has no version name")?;
    let share = Path::new("/usr/share/postgresql").join(major);
    if !share.is_dir() {
        bail!(
            "{} is missing: the Postgres test image needs PostgreSQL's share folder (Debian's postgresql-{major})",
            share.display()
        );
    }
    let target_root = format!("rootfs/usr/lib/postgresql/{major}");
    let mut context = BuildContext::new();
    context.binaries_with_libraries(&[
        (
            &bindir.join("postgres"),
            &format!("{target_root}/bin/postgres"),
        ),
        (&bindir.join("initdb"), &format!("{target_root}/bin/initdb")),
        (Path::new("/bin/sh"), "rootfs/bin/sh"),
    ])?;
    context.tree(&root.join("lib"), &format!("{target_root}/lib"))?;
    context.tree(&share, &format!("rootfs/usr/share/postgresql/{major}"))?;
    for zone in ["UTC", "Etc/UTC"] {
        context.file(
            &Path::new("/usr/share/zoneinfo").join(zone),
            &format!("rootfs/usr/share/zoneinfo/{zone}"),
        )?;
    }
    context.bytes(
        "rootfs/etc/passwd",
        0o644,
        format!("root:x:0:0:root:/root:/bin/sh\npostgres:x:{POSTGRES_UID}:{POSTGRES_UID}:PostgreSQL:/var/lib/postgresql:/bin/sh\n").as_bytes(),
    )?;
    context.bytes(
        "rootfs/etc/group",
        0o644,
        format!("root:x:0:\npostgres:x:{POSTGRES_UID}:\n").as_bytes(),
    )?;
    context.bytes(
        "rootfs/usr/local/bin/docker-entrypoint.sh",
        0o755,
        POSTGRES_ENTRYPOINT.as_bytes(),
    )?;
    // Owned by the postgres user through COPY --chown below.
    context.dir("owned/var/lib/postgresql/data", 0o700)?;
    context.dir("owned/var/run/postgresql", 0o775)?;
    context.dir("owned/tmp", 0o1777)?;
    let dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown={POSTGRES_UID}:{POSTGRES_UID} owned/ /\n\
         ENV PATH=/usr/lib/postgresql/{major}/bin:/bin PGDATA=/var/lib/postgresql/data TZ=UTC\n\
         USER {POSTGRES_UID}\n\
         STOPSIGNAL SIGINT\n\
         EXPOSE 5432\n\
         ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]\n\
         CMD [\"postgres\"]\n"
    );
    context.bytes("Dockerfile", 0o644, dockerfile.as_bytes())?;
    build(POSTGRES_IMAGE, context.finish()?).await?;
    Ok(POSTGRES_IMAGE)
}
