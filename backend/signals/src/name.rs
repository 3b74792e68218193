//! Attribute and label names, each distinct one held once.
//!
//! A lab's telemetry repeats a few dozen names on every span, log line and
//! series (`db.statement`, `http.route`, `trace_id`, `le`…); a `String` per
//! use would cost a heap chunk each time. `Name` shares one copy of each
//! from a process-wide table, up to `MAX_SHARED` distinct names so that a
//! client sending endless new ones cannot grow it; past that a name gets a
//! copy of its own, and says so, so the store still counts its bytes.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct names shared at most; real telemetry has a few hundred.
pub const MAX_SHARED: usize = 4096;

static SHARED: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Default::default);

/// An attribute's or a label's name. Compares, hashes and orders as its
/// text.
#[derive(Clone)]
pub struct Name {
    text: Arc<str>,
    shared: bool,
}

impl Name {
    pub fn new(text: &str) -> Name {
        let mut table = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = table.get(text) {
            return Name {
                text: Arc::clone(known),
                shared: true,
            };
        }
        let text: Arc<str> = Arc::from(text);
        let shared = table.len() < MAX_SHARED;
        if shared {
            table.insert(Arc::clone(&text));
        }
        Name { text, shared }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Heap bytes this name holds alone: none when shared, its own copy
    /// (text and the two reference counts) when the table was full.
    pub fn own_bytes(&self) -> usize {
        if self.shared { 0 } else { self.text.len() + 16 }
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.text, &other.text) || self.text == other.text
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.text == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name::new(&text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::new(text)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.text.to_string()
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Name::new(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_of_each_name_and_a_full_table_still_counts() {
        let a = Name::new("db.statement.test-only");
        let b = Name::from(String::from("db.statement.test-only"));
        assert!(Arc::ptr_eq(&a.text, &b.text));
        assert_eq!(a.own_bytes(), 0);
        assert_eq!(a, b);
        assert_eq!(a, "db.statement.test-only");
        assert!(Name::new("a") < Name::new("b"));

        // Fill the table: later names are copies of their own, counted.
        let mut last = Name::new("x");
        for i in 0..MAX_SHARED + 10 {
            last = Name::new(&format!("generated.name.{i}"));
        }
        assert!(!last.shared);
        assert_eq!(last.own_bytes(), last.len() + 16);
        assert_eq!(last, Name::new(last.as_str()));
        // Names shared before the table filled still are.
        assert!(Name::new("db.statement.test-only").shared);
    }

    #[test]
    fn serde_writes_the_text() {
        let name = Name::new("http.route");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"http.route\"");
        let back: Name = serde_json::from_str("\"http.route\"").unwrap();
        assert_eq!(back, name);
    }
}
