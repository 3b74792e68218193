//! The data access mythical-server uses: a connection pool over the owlbear
//! schema, its migrations, and the three statements of the API.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, SqlSafeStr};

use crate::{Beast, Operation, StorageError};

/// Where the database is and how many connections to keep.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails; short,
    /// so that a database outage shows as quick 500s rather than a pile-up.
    pub acquire_timeout: Duration,
    /// How long a statement may take before the caller gives up on it: a
    /// frozen or unreachable Postgres shows as errors, not hung requests.
    pub query_timeout: Duration,
}

impl Default for DbConfig {
    /// The original's defaults: the `mythical-database` container, user
    /// `postgres`, password `mythical`, the default database.
    fn default() -> Self {
        DbConfig {
            host: "mythical-database".into(),
            port: 5432,
            user: "postgres".into(),
            password: "mythical".into(),
            database: "postgres".into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// The versioned schema migrations, built into the binary.
const MIGRATIONS: [(i64, &str, &str); 1] = [(
    1,
    "owlbear schema",
    include_str!("../migrations/0001_owlbear_schema.sql"),
)];

/// The owlbear database as mythical-server sees it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Builds the pool without connecting: the server starts, and reports not
    /// ready, while Postgres is still away; connections are made (and remade
    /// after a Postgres restart) when a statement needs one.
    pub fn connect_lazy(config: &DbConfig) -> Store {
        let options = PgConnectOptions::new()
            .host(&config.host)
            .port(config.port)
            .username(&config.user)
            .password(&config.password)
            .database(&config.database)
            .application_name("mythical-server");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            // A connection broken by a Postgres restart is dropped on its
            // next use, so the pool refills with live ones.
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options);
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the schema migrations. Safe when several servers start at
    /// once: the migrator holds a Postgres advisory lock while it works.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|err| match err {
                sqlx::migrate::MigrateError::Execute(inner) => StorageError::from(inner),
                other => StorageError::Migration(other.to_string()),
            })
    }

    /// Answers when Postgres does.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Every name in the beast's table, in no particular order (as the
    /// original's `SELECT name from <beast>`).
    pub async fn list_names(&self, beast: Beast) -> Result<Vec<String>, StorageError> {
        let rows: Vec<(String,)> = sqlx::query_as(beast.statement(Operation::Select))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Inserts a name. `None` is sent as SQL NULL, which the schema refuses
    /// with SQLSTATE 23502: that refusal is the lab's reference fault.
    pub async fn insert(&self, beast: Beast, name: Option<&str>) -> Result<(), StorageError> {
        sqlx::query(beast.statement(Operation::Insert))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes by name; returns how many rows went (0 when the name was not
    /// there, or was NULL, which matches nothing).
    pub async fn delete(&self, beast: Beast, name: Option<&str>) -> Result<u64, StorageError> {
        let done = sqlx::query(beast.statement(Operation::Delete))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Drops every beast's table: the original's periodic teardown, first
    /// half. Requests fail with `relation "…" does not exist` until
    /// [`Store::create_tables`] runs.
    pub async fn drop_tables(&self) -> Result<(), StorageError> {
        for beast in Beast::ALL {
            let sql = format!("DROP TABLE IF EXISTS {beast}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Creates any missing beast table with the migration's definition.
    pub async fn create_tables(&self) -> Result<(), StorageError> {
        sqlx::raw_sql(MIGRATIONS[0].2.into_sql_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A login role that can read every table and change nothing: what a
    /// dashboard's Postgres datasource connects as. Idempotent; a second
    /// call sets the password anew.
    pub async fn ensure_reader_role(&self, role: &str, password: &str) -> Result<(), StorageError> {
        if !role.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(StorageError::Client(format!(
                "role name {role:?} must be lowercase letters and underscores"
            )));
        }
        // The password is a literal in DDL (no bind parameters there):
        // doubling quotes keeps it a literal whatever it holds.
        let literal = password.replace('\'', "''");
        let sql = format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} LOGIN;
               END IF;
             END $$;
             ALTER ROLE {role} WITH LOGIN PASSWORD '{literal}';
             ALTER ROLE {role} SET default_transaction_read_only = on;
             GRANT pg_read_all_data TO {role};"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Holds an EXCLUSIVE lock on the beast's table for `hold`, then
    /// commits: reads go on, every INSERT and DELETE waits behind it. The
    /// `slow-query` fault repeats this.
    pub async fn hold_lock(
        &self,
        beast: Beast,
        hold: std::time::Duration,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!("LOCK TABLE {beast} IN EXCLUSIVE MODE");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
        tokio::time::sleep(hold).await;
        tx.commit().await?;
        Ok(())
    }
}
