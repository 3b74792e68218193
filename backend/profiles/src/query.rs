//! Queries: a selector (`process_cpu:cpu:nanoseconds:cpu:nanoseconds
//! {service_name="mythical-server"}`), the stacks it selects merged into one
//! tree over a window, and that tree as top functions, as nested nodes and
//! as Pyroscope's flamebearer.

use std::collections::HashMap;

use lab_signals::{Labels, UnixNanos};
use serde::{Deserialize, Serialize};

use crate::ProfileType;
use crate::store::ProfileStore;

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    NotEq(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

/// A profile type and label matchers (`=`, `!=`, `=~`, `!~`).
#[derive(Debug, Clone)]
pub struct Selector {
    pub profile_type: ProfileType,
    matchers: Vec<(String, Op)>,
}

/// A selector that does not parse, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query {query:?}: {reason}")]
pub struct SelectorError {
    pub query: String,
    pub reason: String,
}

impl Selector {
    pub fn parse(query: &str) -> Result<Selector, SelectorError> {
        let fail = |reason: String| SelectorError {
            query: query.to_owned(),
            reason,
        };
        let query_trimmed = query.trim();
        let (type_text, rest) = match query_trimmed.find('{') {
            Some(at) => (&query_trimmed[..at], &query_trimmed[at..]),
            None => (query_trimmed, "{}"),
        };
        let profile_type: ProfileType = type_text.trim().parse().map_err(fail)?;
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| fail("the label selector must end with }".into()))?;
        let mut matchers = Vec::new();
        let mut chars = inner.trim_start();
        while !chars.is_empty() {
            let name_len = chars
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(chars.len());
            if name_len == 0 {
                return Err(fail(format!("expected a label name at {chars:?}")));
            }
            let name = &chars[..name_len];
            chars = chars[name_len..].trim_start();
            let (op, after) = ["=~", "!~", "!=", "="]
                .iter()
                .find_map(|op| chars.strip_prefix(op).map(|r| (*op, r)))
                .ok_or_else(|| fail(format!("expected =, !=, =~ or !~ after {name}")))?;
            let after = after.trim_start();
            let (value, after) = quoted(after).ok_or_else(|| {
                fail(format!(
                    "the value for {name} must be a double-quoted string"
                ))
            })?;
            let regex = |v: &str| {
                regex::Regex::new(&format!("^(?:{v})$"))
                    .map_err(|e| fail(format!("bad regular expression for {name}: {e}")))
            };
            let op = match op {
                "=" => Op::Eq(value),
                "!=" => Op::NotEq(value),
                "=~" => Op::Re(regex(&value)?),
                _ => Op::NotRe(regex(&value)?),
            };
            matchers.push((name.to_owned(), op));
            chars = after.trim_start();
            if let Some(next) = chars.strip_prefix(',') {
                chars = next.trim_start();
            } else if !chars.is_empty() {
                return Err(fail(format!("expected , or }} at {chars:?}")));
            }
        }
        Ok(Selector {
            profile_type,
            matchers,
        })
    }

    pub fn matches(&self, profile_type: &ProfileType, labels: &Labels) -> bool {
        *profile_type == self.profile_type
            && self.matchers.iter().all(|(name, op)| {
                let value = labels.get(name).unwrap_or("");
                match op {
                    Op::Eq(v) => value == v,
                    Op::NotEq(v) => value != v,
                    Op::Re(re) => re.is_match(value),
                    Op::NotRe(re) => !re.is_match(value),
                }
            })
    }
}

/// `"…"` with `\"` and `\\` escapes → (value, rest).
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 2..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[derive(Debug, Clone, Default)]
struct Node {
    name: u32,
    self_value: i64,
    total: i64,
    children: Vec<u32>,
}

/// Stacks merged into one call tree; node 0 is the root ("total").
#[derive(Debug, Clone)]
pub struct FlameTree {
    names: Vec<String>,
    nodes: Vec<Node>,
    /// Per function name: (self, total), total counted once per stack.
    functions: HashMap<u32, (i64, i64)>,
    /// Sums per timeline step.
    pub timeline: Timeline,
}

/// Total value per step, from `start` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    #[serde(rename = "startTime")]
    pub start_seconds: i64,
    pub samples: Vec<i64>,
    #[serde(rename = "durationDelta")]
    pub step_seconds: i64,
}

/// One function's cost over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCost {
    pub name: String,
    #[serde(rename = "self")]
    pub self_value: i64,
    pub total: i64,
}

/// A node of the tree for drawing: children sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlameNode {
    pub name: String,
    #[serde(rename = "self")]
    pub self_value: i64,
    pub total: i64,
    pub children: Vec<FlameNode>,
}

/// Pyroscope's flamebearer, "single" format: per level, four numbers per
/// node (x offset delta-encoded from the previous node's end, total, self,
/// name index); the root is "total". Read back from Pyroscope's answer
/// as well as written, so a client can summarise any server's graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flamebearer {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub levels: Vec<Vec<i64>>,
    #[serde(rename = "numTicks", default)]
    pub num_ticks: i64,
    #[serde(rename = "maxSelf", default)]
    pub max_self: i64,
}

/// The `limit` costliest by self time, then by total, then by name.
fn ranked(mut all: Vec<FunctionCost>, limit: usize) -> Vec<FunctionCost> {
    all.sort_by(|a, b| {
        b.self_value
            .cmp(&a.self_value)
            .then(b.total.cmp(&a.total))
            .then(a.name.cmp(&b.name))
    });
    all.truncate(limit);
    all
}

impl Flamebearer {
    /// The functions with the most self time: a function's self time sums
    /// over its nodes, its total counts every node (recursion counts
    /// twice, as the graph draws it); the root is left out. A node whose
    /// name index is out of range counts as the empty name.
    pub fn top(&self, limit: usize) -> Vec<FunctionCost> {
        let mut costs: HashMap<&str, (i64, i64)> = HashMap::new();
        for level in &self.levels {
            for node in level.chunks_exact(4) {
                let name = usize::try_from(node[3])
                    .ok()
                    .and_then(|i| self.names.get(i))
                    .map_or("", String::as_str);
                let entry = costs.entry(name).or_default();
                entry.0 = entry.0.saturating_add(node[2]);
                entry.1 = entry.1.saturating_add(node[1]);
            }
        }
        costs.remove("total");
        let all = costs
            .into_iter()
            .map(|(name, (self_value, total))| FunctionCost {
                name: name.to_owned(),
                self_value,
                total,
            })
            .collect();
        ranked(all, limit)
    }
}

/// Merges every profile the selector picks that overlaps `[start, end]`;
/// the timeline has buckets of `step` nanoseconds (at least a second).
pub fn merge(
    store: &ProfileStore,
    selector: &Selector,
    start: UnixNanos,
    end: UnixNanos,
    step: i64,
) -> FlameTree {
    const SECOND: i64 = 1_000_000_000;
    let step = step.max(SECOND);
    let buckets = ((end - start).max(0) / step + 1).min(100_000) as usize;
    let mut tree = FlameTree {
        names: vec!["total".to_owned()],
        nodes: vec![Node::default()],
        functions: HashMap::new(),
        timeline: Timeline {
            start_seconds: start.div_euclid(SECOND),
            samples: vec![0; buckets],
            step_seconds: step / SECOND,
        },
    };
    // Profiles repeat the same stacks: sum each stack's value over the
    // window first, then walk each distinct stack into the tree once.
    let mut sums: Vec<Option<i64>> = vec![None; store.stacks.len()];
    let mut touched: Vec<u32> = Vec::new();
    for (series, profiles) in store.series_in(start, end) {
        if !selector.matches(&series.profile_type, &series.labels) {
            continue;
        }
        for profile in profiles {
            let bucket = ((profile.start.max(start) - start) / step) as usize;
            let mut profile_total = 0;
            for &(stack, value) in &profile.samples {
                let sum = sums[stack as usize].get_or_insert_with(|| {
                    touched.push(stack);
                    0
                });
                *sum += value;
                profile_total += value;
            }
            if let Some(slot) = tree.timeline.samples.get_mut(bucket) {
                *slot += profile_total;
            }
        }
    }
    // Store name id → tree name id, and (parent, name) → child node.
    let mut name_map: HashMap<u32, u32> = HashMap::new();
    let mut children: HashMap<(u32, u32), u32> = HashMap::new();
    let mut seen: Vec<u32> = Vec::new();
    for stack in touched {
        let value = sums[stack as usize].unwrap_or(0);
        if value == 0 {
            continue;
        }
        tree.nodes[0].total += value;
        let mut node = 0u32;
        seen.clear();
        for &store_name in store.stacks[stack as usize].iter() {
            let name = *name_map.entry(store_name).or_insert_with(|| {
                tree.names.push(store.names[store_name as usize].clone());
                tree.names.len() as u32 - 1
            });
            node = match children.get(&(node, name)) {
                Some(&child) => child,
                None => {
                    let child = tree.nodes.len() as u32;
                    tree.nodes.push(Node {
                        name,
                        ..Node::default()
                    });
                    tree.nodes[node as usize].children.push(child);
                    children.insert((node, name), child);
                    child
                }
            };
            tree.nodes[node as usize].total += value;
            // Recursion counts a function's total once per stack.
            if !seen.contains(&name) {
                seen.push(name);
                tree.functions.entry(name).or_default().1 += value;
            }
        }
        if node != 0 {
            tree.nodes[node as usize].self_value += value;
            let leaf = tree.nodes[node as usize].name;
            tree.functions.entry(leaf).or_default().0 += value;
        }
    }
    tree
}

impl FlameTree {
    /// The sum of all selected stacks.
    pub fn total(&self) -> i64 {
        self.nodes[0].total
    }

    /// Functions by self value (then total, then name), at most `limit`.
    pub fn top(&self, limit: usize) -> Vec<FunctionCost> {
        let all = self
            .functions
            .iter()
            .map(|(&name, &(self_value, total))| FunctionCost {
                name: self.names[name as usize].clone(),
                self_value,
                total,
            })
            .collect();
        ranked(all, limit)
    }

    fn sorted_children(&self, node: u32) -> Vec<u32> {
        let mut children = self.nodes[node as usize].children.clone();
        children.sort_by(|a, b| {
            self.names[self.nodes[*a as usize].name as usize]
                .cmp(&self.names[self.nodes[*b as usize].name as usize])
        });
        children
    }

    /// The tree as nested nodes, root "total" first.
    pub fn root(&self) -> FlameNode {
        fn build(tree: &FlameTree, id: u32) -> FlameNode {
            let node = &tree.nodes[id as usize];
            FlameNode {
                name: tree.names[node.name as usize].clone(),
                self_value: node.self_value,
                total: node.total,
                children: tree
                    .sorted_children(id)
                    .into_iter()
                    .map(|c| build(tree, c))
                    .collect(),
            }
        }
        build(self, 0)
    }

    /// The tree in Pyroscope's flamebearer layout: a node's self value takes
    /// the left of its span and its children follow, sorted by name.
    pub fn flamebearer(&self) -> Flamebearer {
        self.flamebearer_limited(None)
    }

    /// As [`FlameTree::flamebearer`], keeping at most about `max_nodes` of
    /// the largest nodes; what is cut off counts as its parent's self.
    pub fn flamebearer_limited(&self, max_nodes: Option<usize>) -> Flamebearer {
        let min_total = match max_nodes {
            Some(max) if max > 0 && self.nodes.len() > max => {
                let mut totals: Vec<i64> = self.nodes.iter().map(|n| n.total).collect();
                totals.sort_unstable_by(|a, b| b.cmp(a));
                totals[max - 1].max(1)
            }
            _ => i64::MIN,
        };
        let mut levels: Vec<Vec<i64>> = Vec::new();
        let mut max_self = 0;
        // (node, absolute x) of the current level, left to right.
        let mut level: Vec<(u32, i64)> = vec![(0, 0)];
        while !level.is_empty() {
            let mut row = Vec::with_capacity(level.len() * 4);
            let mut next = Vec::new();
            let mut previous_end = 0;
            for &(id, x) in &level {
                let node = &self.nodes[id as usize];
                let kept: Vec<u32> = self
                    .sorted_children(id)
                    .into_iter()
                    .filter(|&c| self.nodes[c as usize].total >= min_total)
                    .collect();
                let kept_total: i64 = kept.iter().map(|&c| self.nodes[c as usize].total).sum();
                let self_value = node.total - kept_total;
                row.extend_from_slice(&[
                    x - previous_end,
                    node.total,
                    self_value,
                    i64::from(node.name),
                ]);
                previous_end = x + node.total;
                max_self = max_self.max(self_value);
                let mut child_x = x + self_value;
                for child in kept {
                    next.push((child, child_x));
                    child_x += self.nodes[child as usize].total;
                }
            }
            levels.push(row);
            level = next;
        }
        Flamebearer {
            names: self.names.clone(),
            levels,
            num_ticks: self.total(),
            max_self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StackBuilder;

    fn store() -> ProfileStore {
        let mut store = ProfileStore::default();
        for (service, start, stacks) in [
            (
                "server",
                0,
                vec![("main;serve;hash_the_hoard", 50), ("main;serve", 10)],
            ),
            (
                "server",
                10,
                vec![("main;serve;hash_the_hoard", 30), ("main;rec;rec", 5)],
            ),
            ("requester", 0, vec![("main;send", 100)]),
        ] {
            let mut builder = StackBuilder::default();
            for (stack, value) in stacks {
                let frames = stack.split(';').map(|f| builder.intern(f)).collect();
                builder.push(frames, value);
            }
            store.insert(builder.finish(
                Labels::from_pairs([("service_name", service)]),
                ProfileType::cpu(),
                start * 1_000_000_000,
                (start + 10) * 1_000_000_000,
            ));
        }
        store
    }

    fn selector(text: &str) -> Selector {
        Selector::parse(text).unwrap()
    }

    #[test]
    fn a_flame_graph_read_back_gives_the_trees_top_functions() {
        // No function recurses in the server's stacks, so counting nodes
        // (the graph) and counting stacks (the tree) agree.
        let sel = selector(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="server"}"#);
        let tree = merge(&store(), &sel, 0, 60_000_000_000, 10_000_000_000);
        let text = serde_json::to_string(&tree.flamebearer()).unwrap();
        let graph: Flamebearer = serde_json::from_str(&text).unwrap();
        let without_rec = |top: Vec<FunctionCost>| -> Vec<FunctionCost> {
            top.into_iter().filter(|f| f.name != "rec").collect()
        };
        assert_eq!(without_rec(graph.top(10)), without_rec(tree.top(10)));
        // `rec` calls itself: the graph counts both of its nodes.
        let rec = graph.top(10).into_iter().find(|f| f.name == "rec").unwrap();
        assert_eq!((rec.self_value, rec.total), (5, 10));
    }

    #[test]
    fn a_hostile_flame_graph_gives_bounded_top_functions() {
        let graph = Flamebearer {
            names: vec!["total".into(), "main".into()],
            levels: vec![
                vec![0, i64::MAX, i64::MAX, 1, 0, i64::MAX, 1, 1],
                vec![0, 1, 1, -3, 9],
            ],
            num_ticks: 1,
            max_self: 0,
        };
        let top = graph.top(5);
        assert_eq!(top[0].name, "main");
        assert_eq!(top[0].self_value, i64::MAX, "saturates, never wraps");
        assert_eq!(top[1].name, "", "a name out of range is the empty name");
        assert_eq!(top.len(), 2, "a partial node (two numbers) is left out");
    }

    #[test]
    fn merged_stacks_give_top_functions_by_self_and_total() {
        let sel = selector(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="server"}"#);
        let tree = merge(&store(), &sel, 0, 60_000_000_000, 10_000_000_000);
        assert_eq!(tree.total(), 95);
        let top = tree.top(3);
        assert_eq!(
            top[0],
            FunctionCost {
                name: "hash_the_hoard".into(),
                self_value: 80,
                total: 80
            }
        );
        assert_eq!(
            top[1],
            FunctionCost {
                name: "serve".into(),
                self_value: 10,
                total: 90
            }
        );
        assert_eq!(
            top[2],
            FunctionCost {
                name: "rec".into(),
                self_value: 5,
                total: 5
            },
            "recursion counted once"
        );
        assert_eq!(tree.timeline.samples[..2], [60, 35]);
    }

    #[test]
    fn the_flamebearer_lays_children_inside_their_parent() {
        let sel =
            selector(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=~"serv.*"}"#);
        let fb = merge(&store(), &sel, 0, 60_000_000_000, 10_000_000_000).flamebearer();
        assert_eq!(fb.num_ticks, 95);
        assert_eq!(fb.max_self, 80);
        let name = |i: i64| fb.names[i as usize].as_str();
        assert_eq!(name(fb.levels[0][3]), "total");
        assert_eq!(fb.levels[0][..3], [0, 95, 0]);
        // Level 2: rec (5) then serve (90), sorted by name.
        assert_eq!(fb.levels[2].len(), 8);
        assert_eq!((name(fb.levels[2][3]), fb.levels[2][1]), ("rec", 5));
        assert_eq!((name(fb.levels[2][7]), fb.levels[2][1 + 4]), ("serve", 90));
        assert_eq!(fb.levels[2][4], 0, "serve starts where rec ends");
        // Level 3: serve's child starts after serve's self (10).
        let hoard = fb.levels[3]
            .chunks(4)
            .find(|c| name(c[3]) == "hash_the_hoard")
            .unwrap();
        let rec2_end = 5; // rec;rec sits at x 0..5
        assert_eq!(hoard[0] + rec2_end, 5 + 10);
        let limited = merge(&store(), &sel, 0, 60_000_000_000, 1).flamebearer_limited(Some(3));
        assert_eq!(
            limited.levels.len(),
            3,
            "total, main, serve: the smaller branches are cut"
        );
        assert_eq!(
            limited.levels[2][..3],
            [5, 90, 90],
            "serve keeps its span and takes its cut child as self"
        );
        let root = merge(&store(), &sel, 0, 60_000_000_000, 1).root();
        assert_eq!(root.children[0].name, "main");
        assert_eq!(root.children[0].total, 95);
    }

    #[test]
    fn selectors_parse_and_bad_ones_say_why() {
        let sel = selector(
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name!="a", env="x\"y"}"#,
        );
        let labels = Labels::from_pairs([("service_name", "b"), ("env", "x\"y")]);
        assert!(sel.matches(&ProfileType::cpu(), &labels));
        assert!(
            selector("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
                .matches(&ProfileType::cpu(), &labels)
        );
        for bad in [
            "{service_name=\"a\"}",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=a}",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"a\"",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=~\"(\"}",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{a=\"1\" b=\"2\"}",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
        let err = Selector::parse("cpu{}").unwrap_err();
        assert!(err.to_string().contains("name:sample type"), "{err}");
    }
}
