//! Rules over evidence: each names one root cause from what the telemetry
//! and the database showed. A new fault kind adds a rule here, not a new
//! diagnosis.

use serde::Serialize;

use super::Failure;
use super::failure::Odds;

/// The diagnosed cause, in the stable shape of `lab diagnose --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RootCause {
    /// The fault kind's name.
    pub id: String,
    /// The culprit service.
    pub service: String,
    pub summary: String,
    /// The error, verbatim.
    pub message: String,
}

/// Refusals a table's schema makes: a CHECK constraint (23514), a value
/// longer than the column (22001), and a statement prepared before a
/// column changed type (0A000, `cached plan must not change result type`).
/// [`schema_change`] judges them; the snapshot looks their column up.
pub const SCHEMA_REFUSALS: [&str; 3] = ["23514", "22001", "0A000"];

/// The size of `{}`: a JSON body with no field at all, so no name.
pub const EMPTY_BODY: u64 = 2;

/// Whether the server read a name: its span names one, or records a body
/// that named none; `None` when no server span handled a body.
fn name_received(failure: &Failure) -> Option<bool> {
    match (&failure.received_name, failure.received_bytes) {
        (Some(_), _) => Some(true),
        (None, Some(_)) => Some(false),
        (None, None) => None,
    }
}

/// Whether the requester sent a name: its log line says so, or its span
/// shows an empty body (`{}`).
fn name_sent(failure: &Failure) -> Option<bool> {
    failure
        .logged_name
        .or((failure.sent_bytes == Some(EMPTY_BODY)).then_some(false))
}

struct Rule {
    id: &'static str,
    /// What the rule takes, for the report of a failure it does not fit.
    needs: &'static str,
    applies: fn(&Failure) -> Option<RootCause>,
}

const RULES: &[Rule] = &[
    Rule {
        id: "bad-deploy",
        needs: "NULL refused for a missing name, and failures from the requester's 2.0.0 alone",
        applies: bad_deploy,
    },
    Rule {
        id: "null-name",
        needs: "NULL refused although the server read a name",
        applies: null_name,
    },
    Rule {
        id: "missing-name",
        needs: "NULL refused for a name the request did not carry, from both versions",
        applies: missing_name,
    },
    Rule {
        id: "table-crowded",
        needs: "a unique violation (23505) as often as the table's fill predicts, with a fifth of the names taken",
        applies: table_crowded,
    },
    Rule {
        id: "duplicate-name",
        needs: "a unique violation (23505) more often than the table's fill explains",
        applies: duplicate_name,
    },
    Rule {
        id: "table-wipe",
        needs: "a missing table (42P01)",
        applies: table_wipe,
    },
    Rule {
        id: "pool-exhaustion",
        needs: "no connection to be had while Postgres answers the lab",
        applies: pool_exhaustion,
    },
    Rule {
        id: "schema-change",
        needs: "a refusal the catalogue's column explains and the lab's schema would not make",
        applies: schema_change,
    },
    Rule {
        id: "database-error",
        needs: "a SQLSTATE",
        applies: database_error,
    },
];

/// The first rule that explains the failure.
pub fn explain(failure: &Failure) -> Option<RootCause> {
    RULES.iter().find_map(|rule| (rule.applies)(failure))
}

/// The rules ranked above the one that explains the failure (all, when
/// none does), each with what it takes and what the failure showed.
pub fn rejected(failure: &Failure) -> Vec<super::Rejected> {
    RULES
        .iter()
        .take_while(|rule| (rule.applies)(failure).is_none())
        .map(|rule| super::Rejected {
            id: rule.id.into(),
            why: format!("it takes {}; {}", rule.needs, facts(failure)),
        })
        .collect()
}

/// What the failing call showed, in a few words.
fn facts(failure: &Failure) -> String {
    let mut said = vec![format!(
        "the call failed with SQLSTATE {} on {}",
        failure.sqlstate.as_deref().unwrap_or("none"),
        failure.table.as_deref().unwrap_or("no table")
    )];
    if let Some(bound) = &failure.bound {
        said.push(format!("bound {bound}"));
    }
    match name_received(failure) {
        Some(true) => said.push("the server read a name".into()),
        Some(false) => said.push("the server read no name".into()),
        None => {}
    }
    if let Some((old, new)) = failure.failing_by_version {
        said.push(format!("failing by version: 1.9.2 {old}, 2.0.0 {new}"));
    }
    if let Some(answers) = failure.postgres_answers {
        said.push(if answers {
            "Postgres answers the lab".into()
        } else {
            "Postgres does not answer the lab".into()
        });
    }
    said.join(", ")
}

fn not_null_column(failure: &Failure) -> Option<String> {
    (failure.sqlstate.as_deref() == Some("23502")).then(|| {
        format!(
            "{}.{}",
            failure.table.as_deref().unwrap_or("?"),
            failure.column.as_deref().unwrap_or("?")
        )
    })
}

/// 23502, and the server had received a name but bound NULL.
fn null_name(failure: &Failure) -> Option<RootCause> {
    let column = not_null_column(failure)?;
    (name_received(failure) == Some(true) && failure.bound_null).then(|| RootCause {
        id: "null-name".into(),
        service: "mythical-server".into(),
        summary: format!(
            "mythical-server received the name `{}` (its span's mythical.name) but inserted NULL into {column}, which is NOT NULL: the server drops the name",
            failure.received_name.as_deref().unwrap_or_default()
        ),
        message: failure.message.clone(),
    })
}

/// 23502, and the request reached the server without a name.
fn missing_name(failure: &Failure) -> Option<RootCause> {
    let column = not_null_column(failure)?;
    (name_missing(failure) && versions(failure) == Versions::Both).then(|| RootCause {
        id: "missing-name".into(),
        service: "mythical-requester".into(),
        summary: format!(
            "mythical-requester sent a POST without a name (the server read none from its body{}); the server passed NULL on to {column}, which is NOT NULL: the requester is at fault",
            match failure.logged_name {
                Some(false) => ", and the requester's log line names none",
                _ => "",
            }
        ),
        message: failure.message.clone(),
    })
}

/// Enough failing requester traces to tell one version's failures from
/// chance: each deploy takes half the requests, so when both fail, 1.9.2
/// has about half the failures, and when only 2.0.0 does, none of them
/// but the background's.
const VERSION_SAMPLE: usize = 30;
/// At most this share of the failures from 1.9.2: the background of
/// repeated names, not the deploy.
const OLD_VERSION_SHARE: usize = 50;
/// At least this many failures from 1.9.2, over its background share: the
/// old version fails too, so no deploy explains it.
const OLD_VERSION_FAILING: usize = 3;

/// What the failing requester traces by version say of a missing name.
#[derive(Debug, PartialEq)]
enum Versions {
    /// Only 2.0.0 fails, in a sample large enough to tell.
    OnlyTheNew,
    /// 1.9.2 fails too.
    Both,
    /// Too few failures to tell either way yet.
    TooFew,
}

fn versions(failure: &Failure) -> Versions {
    let Some((old, new)) = failure.failing_by_version else {
        return Versions::Both;
    };
    let background = old * OLD_VERSION_SHARE <= old + new;
    if background && new >= VERSION_SAMPLE {
        Versions::OnlyTheNew
    } else if !background && old >= OLD_VERSION_FAILING {
        Versions::Both
    } else {
        Versions::TooFew
    }
}

/// The request arrived without a name (NULL refused, and the server says
/// it received none, or the requester that it sent none).
fn name_missing(failure: &Failure) -> bool {
    not_null_column(failure).is_some()
        && (name_received(failure) == Some(false) || name_sent(failure) == Some(false))
}

/// Why no cause can be named yet, when the evidence fits two: a missing
/// name is the requester's code (missing-name) or one version of it
/// (bad-deploy), and a handful of failures cannot tell which.
pub fn undecided(failure: &Failure) -> Option<String> {
    let (old, new) = failure.failing_by_version?;
    (name_missing(failure) && versions(failure) == Versions::TooFew).then(|| {
        format!(
            "requests arrive without a name; {new} failing traces from 2.0.0 and {old} from 1.9.2 are too few to tell one version from both (at least {VERSION_SAMPLE} from 2.0.0 alone, or {OLD_VERSION_FAILING} from 1.9.2)"
        )
    })
}

/// 23502, and only the requester's version 2.0.0 fails: a deploy broke it.
fn bad_deploy(failure: &Failure) -> Option<RootCause> {
    let (old, new) = failure.failing_by_version?;
    (name_missing(failure) && versions(failure) == Versions::OnlyTheNew).then(|| RootCause {
        id: "bad-deploy".into(),
        service: "mythical-requester".into(),
        summary: format!(
            "mythical-requester 2.0.0 fails and 1.9.2 hardly does ({new} failing traces from 2.0.0, {old} from 1.9.2): its POSTs arrive without a name — roll back 2.0.0"
        ),
        message: failure.message.clone(),
    })
}

/// 23505 on the name's UNIQUE constraint more often than chance: the
/// requester repeats names.
fn duplicate_name(failure: &Failure) -> Option<RootCause> {
    let chance = failure.collisions.as_ref().map(|c| c.chance());
    (failure.sqlstate.as_deref() == Some("23505")
        && failure
            .collisions
            .as_ref()
            .is_none_or(|c| c.odds() == Odds::Exceeded))
    .then(|| RootCause {
        id: "duplicate-name".into(),
        service: "mythical-requester".into(),
        summary: format!(
            "{} refuses names that already exist{}: mythical-requester keeps sending the same name",
            failure.table.as_deref().unwrap_or("the table"),
            match (chance, failure.collisions.as_ref().and_then(|c| c.failing())) {
                (Some(chance), Some(failing)) => format!(
                    " ({:.0}% of its POSTs fail, where the {:.1}% of names it holds would refuse that many)",
                    failing * 100.0,
                    chance * 100.0
                ),
                _ => String::new(),
            }
        ),
        message: failure.message.clone(),
    })
}

/// 23505 as often as the table's fill predicts, and the table holding so
/// many of the names the requester draws that new ones fail often: the
/// data fills the table, not a requester repeating itself.
fn table_crowded(failure: &Failure) -> Option<RootCause> {
    let collisions = failure.collisions.as_ref()?;
    (failure.sqlstate.as_deref() == Some("23505") && collisions.odds() == Odds::Crowded).then(|| {
        RootCause {
            id: "table-crowded".into(),
            service: "postgres".into(),
            summary: format!(
                "{}, so {:.0}% of new names are already taken and POSTs fail as often ({:.0}%): the table's data, not the requester, must change",
                collisions.fill(),
                collisions.chance() * 100.0,
                collisions.failing().unwrap_or_default() * 100.0
            ),
            message: failure.message.clone(),
        }
    })
}

/// 42P01: the table is gone. A traced DROP says which service removed
/// it; with none, it went from outside the services (by hand, or another
/// client), and what explains the failures is the database's schema.
fn table_wipe(failure: &Failure) -> Option<RootCause> {
    if failure.sqlstate.as_deref() != Some("42P01") {
        return None;
    }
    let table = failure.table.as_deref().unwrap_or("a beast's table");
    Some(match &failure.dropped_by {
        Some(service) => RootCause {
            id: "table-wipe".into(),
            service: service.clone(),
            summary: format!(
                "{table} is gone: {service} traced the DROP that removed it, and no CREATE has brought it back"
            ),
            message: failure.message.clone(),
        },
        None => RootCause {
            id: "table-wipe".into(),
            service: "postgres".into(),
            summary: format!(
                "{table} is gone from Postgres and no service traced a DROP in the telemetry kept: it was removed from outside the services (by hand, or by another client) or longer ago than the telemetry reaches; the schema must be restored"
            ),
            message: failure.message.clone(),
        },
    })
}

/// No connection to be had while Postgres itself answers: the server's
/// pool is held by something that never gives connections back.
fn pool_exhaustion(failure: &Failure) -> Option<RootCause> {
    (failure.sqlstate.as_deref() == Some("unavailable") && failure.postgres_answers == Some(true))
        .then(|| RootCause {
            id: "pool-exhaustion".into(),
            service: "mythical-server".into(),
            summary: match failure.idle_in_transaction {
                Some(n) if n > 0 => format!(
                    "mythical-server cannot get a connection from its pool while Postgres answers at once; {n} sessions idle in transaction hold them"
                ),
                _ => "mythical-server cannot get a connection from its pool while Postgres answers at once".into(),
            },
            message: failure.message.clone(),
        })
}

/// Postgres refuses what the services write because the table is no
/// longer the lab's: a CHECK constraint (23514) or a shorter `name`
/// (22001) on the `name` column, or a column the services never write made
/// NOT NULL (23502 on another column). The culprit is the schema the
/// catalogue shows, not the server that passed the refusal on.
fn schema_change(failure: &Failure) -> Option<RootCause> {
    let schema = failure.schema.as_ref()?;
    let sqlstate = failure.sqlstate.as_deref()?;
    let replanned = sqlstate == "0A000" && failure.message.contains("cached plan must not change");
    let differences = match sqlstate {
        "0A000" if replanned => {
            let mut differences = schema.name_differences();
            if differences.is_empty() {
                differences.push(format!("a column of {} changed type", schema.table));
            }
            differences.push(
                "mythical-server's prepared statements were planned against the table before the change"
                    .to_owned(),
            );
            differences
        }
        "23514" | "22001" if schema.column == "name" => schema.name_differences(),
        "23502" if schema.column != "name" && !schema.is_nullable && schema.default.is_none() => {
            vec![format!(
                "{} is NOT NULL with no default, and the services never write it",
                schema.column
            )]
        }
        _ => return None,
    };
    if differences.is_empty() {
        return None;
    }
    let sent = match failure.bound.as_deref() {
        Some(value) if value != "NULL" => format!(
            " (mythical-server bound `{value}`, {} characters, which the lab's VARCHAR({}) takes)",
            value.chars().count(),
            mythical_storage::catalogue::NAME_MAX_LENGTH
        ),
        _ => String::new(),
    };
    Some(RootCause {
        id: "schema-change".into(),
        service: "postgres".into(),
        summary: format!(
            "{}.{} is no longer the lab's schema: {}; Postgres refuses what the services write{sent}, so the schema was changed, not the services",
            schema.table,
            schema.column,
            differences.join("; ")
        ),
        message: failure.message.clone(),
    })
}

/// Any other database refusal: named by its SQLSTATE, blamed on the server
/// that issued the statement.
fn database_error(failure: &Failure) -> Option<RootCause> {
    let sqlstate = failure.sqlstate.as_deref()?;
    Some(RootCause {
        id: format!("database-error-{sqlstate}"),
        service: failure.service.clone(),
        summary: format!(
            "Postgres refused {} with SQLSTATE {sqlstate}",
            failure.span_name
        ),
        message: failure.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mythical_storage::catalogue::{ColumnInfo, Constraint, ConstraintKind};

    fn failure(received: Option<bool>, sent: Option<bool>, null: bool) -> Failure {
        Failure {
            trace_id: "t".into(),
            service: "mythical-server".into(),
            span_name: "INSERT owlbear".into(),
            message:
                r#"null value in column "name" of relation "owlbear" violates not-null constraint"#
                    .into(),
            sqlstate: Some("23502".into()),
            table: Some("owlbear".into()),
            column: Some("name".into()),
            bound_null: null,
            bound: Some(if null { "NULL" } else { "copper_Dolly" }.into()),
            schema: None,
            // `{"name":"copper_Dolly"}` or `{}`.
            received_name: received
                .filter(|named| *named)
                .map(|_| "copper_Dolly".into()),
            received_bytes: received.map(|named| if named { 23 } else { EMPTY_BODY }),
            sent_bytes: sent.map(|named| if named { 23 } else { EMPTY_BODY }),
            logged_name: sent,
            failing_by_version: None,
            postgres_answers: None,
            idle_in_transaction: None,
            dropped_by: None,
            collisions: None,
        }
    }

    fn name_column(max_length: i32, checks: &[(&str, &str)]) -> ColumnInfo {
        ColumnInfo {
            table: "owlbear".into(),
            column: "name".into(),
            is_nullable: false,
            data_type: "character varying".into(),
            max_length: Some(max_length),
            default: None,
            constraints: checks
                .iter()
                .map(|(name, definition)| Constraint {
                    name: (*name).into(),
                    kind: ConstraintKind::Check,
                    definition: (*definition).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_schema_that_refuses_valid_names_is_postgres_fault_not_the_servers() {
        let mut check = failure(Some(true), Some(true), false);
        check.sqlstate = Some("23514".into());
        check.message =
            r#"new row for relation "owlbear" violates check constraint "short_names""#.into();
        check.schema = Some(name_column(
            50,
            &[("short_names", "CHECK ((length((name)::text) < 3))")],
        ));
        let cause = explain(&check).unwrap();
        assert_eq!(
            (cause.id.as_str(), cause.service.as_str()),
            ("schema-change", "postgres")
        );
        assert!(
            cause.summary.contains("short_names is CHECK"),
            "{}",
            cause.summary
        );
        assert!(
            cause.summary.contains("`copper_Dolly`, 12 characters"),
            "{}",
            cause.summary
        );

        let mut shorter = check.clone();
        shorter.sqlstate = Some("22001".into());
        shorter.schema = Some(name_column(4, &[]));
        let cause = explain(&shorter).unwrap();
        assert_eq!(cause.id, "schema-change");
        assert!(
            cause.summary.contains("at most 4 characters"),
            "{}",
            cause.summary
        );

        // A GET prepared before the column changed type.
        let mut replanned = check.clone();
        replanned.sqlstate = Some("0A000".into());
        replanned.message = "cached plan must not change result type".into();
        replanned.bound = None;
        replanned.schema = Some(name_column(4, &[]));
        let cause = explain(&replanned).unwrap();
        assert_eq!(
            (cause.id.as_str(), cause.service.as_str()),
            ("schema-change", "postgres")
        );
        assert!(
            cause.summary.contains("prepared statements"),
            "{}",
            cause.summary
        );

        // The lab's own schema refusing a value is the sender's doing.
        let mut long = shorter.clone();
        long.schema = Some(name_column(50, &[]));
        assert_eq!(explain(&long).unwrap().id, "database-error-22001");
        assert_eq!(explain(&long).unwrap().service, "mythical-server");

        // A column the services never write, made NOT NULL by hand.
        let mut added = failure(Some(true), Some(true), false);
        added.message =
            r#"null value in column "keeper" of relation "owlbear" violates not-null constraint"#
                .into();
        added.column = Some("keeper".into());
        added.schema = Some(ColumnInfo {
            column: "keeper".into(),
            data_type: "text".into(),
            max_length: None,
            ..name_column(50, &[])
        });
        let cause = explain(&added).unwrap();
        assert_eq!(
            (cause.id.as_str(), cause.service.as_str()),
            ("schema-change", "postgres")
        );
        assert!(
            cause.summary.contains("keeper is NOT NULL"),
            "{}",
            cause.summary
        );
    }

    #[test]
    fn the_span_evidence_tells_the_culprit() {
        assert_eq!(
            explain(&failure(Some(true), Some(true), true)).unwrap().id,
            "null-name"
        );
        let missing = explain(&failure(Some(false), Some(false), true)).unwrap();
        assert_eq!(missing.id, "missing-name");
        assert_eq!(missing.service, "mythical-requester");
        let mut other = failure(None, None, false);
        other.sqlstate = Some("23505".into());
        assert_eq!(explain(&other).unwrap().id, "duplicate-name");
        other.sqlstate = Some("40001".into());
        assert_eq!(explain(&other).unwrap().id, "database-error-40001");
        let mut deploy = failure(Some(false), Some(false), true);
        deploy.failing_by_version = Some((0, 40));
        assert_eq!(explain(&deploy).unwrap().id, "bad-deploy");
        // A repeated name from 1.9.2 now and then is background.
        deploy.failing_by_version = Some((1, 120));
        assert_eq!(explain(&deploy).unwrap().id, "bad-deploy");
        // Both versions fail, each deploy its half or less.
        for both in [(20, 20), (6, 34)] {
            deploy.failing_by_version = Some(both);
            assert_eq!(explain(&deploy).unwrap().id, "missing-name", "{both:?}");
        }
        assert_eq!(undecided(&deploy), None);
        // Too few to tell: no cause is named yet.
        for few in [(0, 12), (1, 8), (2, 20)] {
            deploy.failing_by_version = Some(few);
            assert!(undecided(&deploy).is_some(), "{few:?}");
        }
        // A NULL the server made is not a question of versions.
        let mut dropped = failure(Some(true), Some(true), true);
        dropped.failing_by_version = Some((0, 2));
        assert_eq!(undecided(&dropped), None);
        assert_eq!(explain(&dropped).unwrap().id, "null-name");
    }

    #[test]
    fn summaries_say_only_what_was_found() {
        let mut deploy = failure(Some(false), Some(false), true);
        deploy.failing_by_version = Some((1, 120));
        let said = explain(&deploy).unwrap().summary;
        assert!(
            said.contains("120 failing traces from 2.0.0, 1 from 1.9.2"),
            "{said}"
        );

        let mut pool = failure(None, None, false);
        pool.sqlstate = Some("unavailable".into());
        pool.postgres_answers = Some(true);
        for idle in [None, Some(0)] {
            pool.idle_in_transaction = idle;
            let said = explain(&pool).unwrap().summary;
            assert!(!said.contains("idle in transaction"), "{said}");
        }
        pool.idle_in_transaction = Some(5);
        let said = explain(&pool).unwrap().summary;
        assert!(said.contains("5 sessions idle in transaction"), "{said}");

        let mut wiped = failure(None, None, false);
        wiped.sqlstate = Some("42P01".into());
        wiped.dropped_by = Some("mythical-server".into());
        let by_server = explain(&wiped).unwrap();
        assert_eq!(
            (by_server.id.as_str(), by_server.service.as_str()),
            ("table-wipe", "mythical-server")
        );
        wiped.dropped_by = None;
        let by_hand = explain(&wiped).unwrap();
        assert_eq!(by_hand.service, "postgres");
        assert!(
            by_hand.summary.contains("no service traced a DROP"),
            "{}",
            by_hand.summary
        );
    }
}
