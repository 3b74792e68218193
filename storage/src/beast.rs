//! The five beasts: each is an HTTP endpoint of mythical-server and a table in Postgres.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A beast of the original intro-to-mltp, in the original's order (the
/// requester's delete probability and danger level depend on the position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Beast {
    Unicorn,
    Manticore,
    Illithid,
    Owlbear,
    Beholder,
}

/// What a statement does, for the database span's `db.operation.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Select,
    Insert,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Select => "SELECT",
            Operation::Insert => "INSERT",
            Operation::Delete => "DELETE",
        }
    }
}

impl Beast {
    pub const ALL: [Beast; 5] = [
        Beast::Unicorn,
        Beast::Manticore,
        Beast::Illithid,
        Beast::Owlbear,
        Beast::Beholder,
    ];

    /// The endpoint and table name.
    pub fn as_str(self) -> &'static str {
        match self {
            Beast::Unicorn => "unicorn",
            Beast::Manticore => "manticore",
            Beast::Illithid => "illithid",
            Beast::Owlbear => "owlbear",
            Beast::Beholder => "beholder",
        }
    }

    /// Position in [`Beast::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// What one request to this beast adds to the requester's
    /// `mythical_danger_level_30s` gauge (the original's accumulators).
    pub fn danger_level(self) -> u64 {
        match self {
            Beast::Unicorn => 1,
            Beast::Manticore => 23,
            Beast::Illithid => 13,
            Beast::Owlbear => 32,
            Beast::Beholder => 153,
        }
    }

    /// The statement the server runs for `op` on this beast's table. Table
    /// names come from this closed set, never from a request, so the text is
    /// static and every value travels as a bind parameter.
    pub fn statement(self, op: Operation) -> &'static str {
        macro_rules! statements {
            ($($beast:ident => $table:literal),* $(,)?) => {
                match (self, op) {
                    $(
                        (Beast::$beast, Operation::Select) => concat!("SELECT name FROM ", $table),
                        (Beast::$beast, Operation::Insert) => concat!("INSERT INTO ", $table, " (name) VALUES ($1)"),
                        (Beast::$beast, Operation::Delete) => concat!("DELETE FROM ", $table, " WHERE name = $1"),
                    )*
                }
            };
        }
        statements!(
            Unicorn => "unicorn",
            Manticore => "manticore",
            Illithid => "illithid",
            Owlbear => "owlbear",
            Beholder => "beholder",
        )
    }
}

impl Beast {
    /// `{operation} {table}`, the OTel database span name for `op` here.
    pub fn span_name(self, op: Operation) -> &'static str {
        macro_rules! names {
            ($($beast:ident => $table:literal),* $(,)?) => {
                match (self, op) {
                    $(
                        (Beast::$beast, Operation::Select) => concat!("SELECT ", $table),
                        (Beast::$beast, Operation::Insert) => concat!("INSERT ", $table),
                        (Beast::$beast, Operation::Delete) => concat!("DELETE ", $table),
                    )*
                }
            };
        }
        names!(
            Unicorn => "unicorn",
            Manticore => "manticore",
            Illithid => "illithid",
            Owlbear => "owlbear",
            Beholder => "beholder",
        )
    }
}

impl fmt::Display for Beast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the five beasts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a valid endpoint (beasts: unicorn, manticore, illithid, owlbear, beholder)")]
pub struct UnknownBeast(pub String);

impl FromStr for Beast {
    type Err = UnknownBeast;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Beast::ALL
            .into_iter()
            .find(|beast| beast.as_str() == s)
            .ok_or_else(|| UnknownBeast(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_beast_round_trips_through_its_name() {
        for beast in Beast::ALL {
            assert_eq!(beast.as_str().parse::<Beast>(), Ok(beast));
            assert_eq!(Beast::ALL[beast.index()], beast);
        }
        assert_eq!(
            "kraken".parse::<Beast>(),
            Err(UnknownBeast("kraken".into()))
        );
    }

    #[test]
    fn statements_name_the_beasts_own_table() {
        assert_eq!(
            Beast::Owlbear.statement(Operation::Insert),
            "INSERT INTO owlbear (name) VALUES ($1)"
        );
        assert_eq!(
            Beast::Beholder.statement(Operation::Select),
            "SELECT name FROM beholder"
        );
        assert_eq!(
            Beast::Owlbear.span_name(Operation::Insert),
            "INSERT owlbear"
        );
        assert_eq!(
            Beast::Unicorn.statement(Operation::Delete),
            "DELETE FROM unicorn WHERE name = $1"
        );
    }
}
