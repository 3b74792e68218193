//! What Postgres' own catalogue says about a table: the evidence diagnosis
//! shows for a database error (is the column nullable, which constraints
//! guard it, how many rows are there).

use serde::Serialize;
use sqlx::PgPool;

use crate::{Beast, StorageError};

/// The query diagnosis shows the learner for a column's nullability; the
/// seed article's last step.
pub const COLUMN_SQL: &str = "SELECT table_name, column_name, is_nullable, data_type, \
character_maximum_length, column_default FROM information_schema.columns \
WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2";

/// Constraints on one column, from `pg_constraint` (information_schema does
/// not list NOT NULL per column, and names primary keys and unique
/// constraints only through joins).
pub const CONSTRAINTS_SQL: &str = "SELECT con.conname::text, con.contype::text, \
pg_get_constraintdef(con.oid) FROM pg_constraint con \
JOIN pg_class rel ON rel.oid = con.conrelid \
JOIN pg_namespace nsp ON nsp.oid = rel.relnamespace \
JOIN pg_attribute att ON att.attrelid = rel.oid AND att.attnum = ANY (con.conkey) \
WHERE nsp.nspname = current_schema() AND rel.relname = $1 AND att.attname = $2 \
ORDER BY con.conname";

/// A column as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ColumnInfo {
    pub table: String,
    pub column: String,
    /// `information_schema.columns.is_nullable`: false means NOT NULL.
    pub is_nullable: bool,
    pub data_type: String,
    pub max_length: Option<i32>,
    pub default: Option<String>,
    pub constraints: Vec<Constraint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    /// `pg_get_constraintdef`, e.g. `UNIQUE (name)`.
    pub definition: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    Check,
    ForeignKey,
    NotNull,
    Exclusion,
    Other,
}

impl ConstraintKind {
    fn from_contype(contype: &str) -> Self {
        match contype {
            "p" => ConstraintKind::PrimaryKey,
            "u" => ConstraintKind::Unique,
            "c" => ConstraintKind::Check,
            "f" => ConstraintKind::ForeignKey,
            "n" => ConstraintKind::NotNull,
            "x" => ConstraintKind::Exclusion,
            _ => ConstraintKind::Other,
        }
    }
}

/// The longest name a beast table takes in the lab's own schema
/// (`name VARCHAR(50) UNIQUE NOT NULL`, `migrations/0001_owlbear_schema.sql`).
pub const NAME_MAX_LENGTH: i32 = 50;

impl ColumnInfo {
    /// How this beast table's `name` column differs from the lab's own
    /// schema, one phrase per difference (empty when it has that schema):
    /// what would make Postgres refuse names the services send.
    pub fn name_differences(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.data_type != "character varying" {
            out.push(format!(
                "its type is {}, not character varying",
                self.data_type
            ));
        }
        if let Some(n) = self.max_length
            && n != NAME_MAX_LENGTH
        {
            out.push(format!(
                "it holds at most {n} characters, not {NAME_MAX_LENGTH}"
            ));
        }
        for c in &self.constraints {
            if matches!(
                c.kind,
                ConstraintKind::Check | ConstraintKind::ForeignKey | ConstraintKind::Exclusion
            ) {
                out.push(format!("constraint {} is {}", c.name, c.definition));
            }
        }
        out
    }
}

/// Describes `table.column`, or `None` when the catalogue has no such
/// column (the table was dropped, or the name is wrong).
pub async fn column_info(
    pool: &PgPool,
    table: &str,
    column: &str,
) -> Result<Option<ColumnInfo>, StorageError> {
    type ColumnRow = (String, String, String, String, Option<i32>, Option<String>);
    let row: Option<ColumnRow> = sqlx::query_as(COLUMN_SQL)
        .bind(table)
        .bind(column)
        .fetch_optional(pool)
        .await?;
    let Some((table, column, is_nullable, data_type, max_length, default)) = row else {
        return Ok(None);
    };
    let constraints: Vec<(String, String, String)> = sqlx::query_as(CONSTRAINTS_SQL)
        .bind(&table)
        .bind(&column)
        .fetch_all(pool)
        .await?;
    Ok(Some(ColumnInfo {
        table,
        column,
        is_nullable: is_nullable == "YES",
        data_type,
        max_length,
        default,
        constraints: constraints
            .into_iter()
            .map(|(name, contype, definition)| Constraint {
                name,
                kind: ConstraintKind::from_contype(&contype),
                definition,
            })
            .collect(),
    }))
}

/// Rows in a beast's table.
pub async fn row_count(pool: &PgPool, beast: Beast) -> Result<i64, StorageError> {
    let sql = match beast {
        Beast::Unicorn => "SELECT count(*) FROM unicorn",
        Beast::Manticore => "SELECT count(*) FROM manticore",
        Beast::Illithid => "SELECT count(*) FROM illithid",
        Beast::Owlbear => "SELECT count(*) FROM owlbear",
        Beast::Beholder => "SELECT count(*) FROM beholder",
    };
    let (count,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await?;
    Ok(count)
}

/// Rows of a learner's or a guide's query, every value as text (NULL as
/// `NULL`), run in a read-only transaction so a query in a scenario can
/// look but never change anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub async fn read_only_query(pool: &PgPool, sql: &str) -> Result<Rows, StorageError> {
    use sqlx::Row;
    let inner = sql.trim().trim_end_matches(';');
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    // row_to_json keeps the query's column order and renders every type
    // as Postgres itself would.
    let wrapped = format!("SELECT row_to_json(q)::text FROM ({inner}) AS q");
    let fetched = sqlx::query(sqlx::AssertSqlSafe(wrapped))
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    let mut columns = Vec::new();
    let mut rows = Vec::with_capacity(fetched.len());
    for row in fetched {
        let text: String = row.try_get(0)?;
        let OrderedRow(fields) = serde_json::from_str(&text)
            .map_err(|e| StorageError::Client(format!("a row did not read back: {e}")))?;
        if columns.is_empty() {
            columns = fields.iter().map(|(k, _)| k.clone()).collect();
        }
        rows.push(
            fields
                .into_iter()
                .map(|(_, v)| match v {
                    serde_json::Value::Null => "NULL".to_owned(),
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    Ok(Rows { columns, rows })
}

/// A JSON object's fields in the order they were written.
struct OrderedRow(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedRow, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(OrderedRow(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(max_length: Option<i32>, constraints: Vec<Constraint>) -> ColumnInfo {
        ColumnInfo {
            table: "owlbear".into(),
            column: "name".into(),
            is_nullable: false,
            data_type: "character varying".into(),
            max_length,
            default: None,
            constraints,
        }
    }

    fn constraint(name: &str, kind: ConstraintKind, definition: &str) -> Constraint {
        Constraint {
            name: name.into(),
            kind,
            definition: definition.into(),
        }
    }

    #[test]
    fn the_labs_own_name_column_has_no_differences() {
        let unique = constraint("owlbear_name_key", ConstraintKind::Unique, "UNIQUE (name)");
        assert!(name(Some(50), vec![unique]).name_differences().is_empty());
    }

    #[test]
    fn a_shorter_column_and_a_check_are_differences() {
        let check = constraint(
            "short_names",
            ConstraintKind::Check,
            "CHECK ((length((name)::text) < 3))",
        );
        let said = name(Some(4), vec![check]).name_differences();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("at most 4 characters"), "{said:?}");
        assert!(said[1].contains("short_names is CHECK"), "{said:?}");
        let text = ColumnInfo {
            data_type: "text".into(),
            max_length: None,
            ..name(None, Vec::new())
        };
        assert_eq!(text.name_differences().len(), 1);
    }
}
