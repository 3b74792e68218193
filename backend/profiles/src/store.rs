//! Profiles kept in memory: one series per (profile type, labels), each a
//! time-ordered list of profiles whose samples point into store-wide tables
//! of stacks and function names (a service repeats the same stacks every
//! ten seconds, so a profile costs 16 bytes a stack). Bounded by age and
//! approximate bytes like the backend's other signals.

use std::collections::{BTreeSet, HashMap};

use lab_signals::{Labels, UnixNanos};

use crate::query::Selector;
use crate::{Profile, ProfileType};

pub(crate) struct StoredProfile {
    pub(crate) start: UnixNanos,
    pub(crate) end: UnixNanos,
    /// Store-wide stack ids and their values.
    pub(crate) samples: Vec<(u32, i64)>,
    bytes: usize,
}

pub(crate) struct Series {
    pub(crate) profile_type: ProfileType,
    pub(crate) labels: Labels,
    pub(crate) profiles: Vec<StoredProfile>,
}

#[derive(Default)]
pub struct ProfileStore {
    pub(crate) names: Vec<String>,
    name_ids: HashMap<String, u32>,
    /// Frames (root first) as name ids.
    pub(crate) stacks: Vec<Box<[u32]>>,
    stack_ids: HashMap<Box<[u32]>, u32>,
    /// What the two tables hold, in bytes.
    table_bytes: usize,
    pub(crate) series: Vec<Series>,
    index: HashMap<(ProfileType, Labels), usize>,
    profile_count: usize,
    bytes: usize,
}

fn labels_bytes(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<String>())
        .sum()
}

impl ProfileStore {
    pub fn insert(&mut self, profile: Profile) {
        // Map the profile's own name table onto the store's.
        let ids: Vec<u32> = profile
            .names
            .iter()
            .map(|name| match self.name_ids.get(name) {
                Some(&id) => id,
                None => {
                    let id = self.names.len() as u32;
                    let cost = 2 * (name.len() + std::mem::size_of::<String>()) + 4;
                    self.table_bytes += cost;
                    self.bytes += cost;
                    self.names.push(name.clone());
                    self.name_ids.insert(name.clone(), id);
                    id
                }
            })
            .collect();
        let mut samples = Vec::with_capacity(profile.stacks.len());
        for stack in &profile.stacks {
            let frames: Box<[u32]> = stack.frames.iter().map(|&f| ids[f as usize]).collect();
            let id = match self.stack_ids.get(&frames) {
                Some(&id) => id,
                None => {
                    let id = self.stacks.len() as u32;
                    // Twice: once in the table, once as the index's key.
                    let cost = 2 * (frames.len() * 4 + std::mem::size_of::<Box<[u32]>>()) + 4;
                    self.table_bytes += cost;
                    self.bytes += cost;
                    self.stacks.push(frames.clone());
                    self.stack_ids.insert(frames, id);
                    id
                }
            };
            samples.push((id, stack.value));
        }
        let bytes = std::mem::size_of::<StoredProfile>() + samples.len() * 16;
        let key = (profile.profile_type, profile.labels);
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = self.series.len();
                self.bytes += labels_bytes(&key.1);
                self.series.push(Series {
                    profile_type: key.0.clone(),
                    labels: key.1.clone(),
                    profiles: Vec::new(),
                });
                self.index.insert(key, slot);
                slot
            }
        };
        let stored = StoredProfile {
            start: profile.start,
            end: profile.end,
            samples,
            bytes,
        };
        self.bytes += bytes;
        self.profile_count += 1;
        let profiles = &mut self.series[slot].profiles;
        if profiles
            .last()
            .is_none_or(|last| last.start <= stored.start)
        {
            profiles.push(stored);
        } else {
            let at = profiles.partition_point(|p| p.start <= stored.start);
            profiles.insert(at, stored);
        }
    }

    pub fn profile_count(&self) -> usize {
        self.profile_count
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Approximate heap bytes, what the backend's size bound counts.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn oldest(&self) -> Option<UnixNanos> {
        self.series
            .iter()
            .filter_map(|s| s.profiles.first())
            .map(|p| p.start)
            .min()
    }

    /// Drops every profile that starts before `cutoff`, and series left
    /// empty. The stack and name tables stay while any profile is kept (a
    /// service's stacks are bounded by its code) and go with the last one.
    pub fn evict_before(&mut self, cutoff: UnixNanos) -> usize {
        let mut freed = 0;
        for series in &mut self.series {
            let old = series.profiles.partition_point(|p| p.start < cutoff);
            if old > 0 {
                freed += series.profiles[..old]
                    .iter()
                    .map(|p| p.bytes)
                    .sum::<usize>();
                series.profiles.drain(..old);
                self.profile_count -= old;
            }
        }
        if self.series.iter().any(|s| s.profiles.is_empty()) {
            freed += self
                .series
                .iter()
                .filter(|s| s.profiles.is_empty())
                .map(|s| labels_bytes(&s.labels))
                .sum::<usize>();
            self.series.retain(|s| !s.profiles.is_empty());
            self.index = self
                .series
                .iter()
                .enumerate()
                .map(|(slot, s)| ((s.profile_type.clone(), s.labels.clone()), slot))
                .collect();
        }
        if self.profile_count == 0 && !self.names.is_empty() {
            freed += self.table_bytes;
            self.table_bytes = 0;
            self.names = Vec::new();
            self.name_ids = HashMap::new();
            self.stacks = Vec::new();
            self.stack_ids = HashMap::new();
        }
        self.bytes -= freed;
        freed
    }

    /// Series with a profile overlapping `[start, end]`.
    pub(crate) fn series_in(
        &self,
        start: UnixNanos,
        end: UnixNanos,
    ) -> impl Iterator<Item = (&Series, &[StoredProfile])> {
        self.series.iter().filter_map(move |series| {
            // Profiles are sorted by start; one may begin before `start`
            // and still reach into the window.
            let to = series.profiles.partition_point(|p| p.start <= end);
            let from = series.profiles[..to]
                .iter()
                .position(|p| p.end >= start)
                .unwrap_or(to);
            let window = &series.profiles[from..to];
            (!window.is_empty()).then_some((series, window))
        })
    }

    /// The values of label `name` among series with data in the window,
    /// sorted; `__name__` gives the profile names.
    pub fn label_values(
        &self,
        name: &str,
        selector: Option<&Selector>,
        start: UnixNanos,
        end: UnixNanos,
    ) -> Vec<String> {
        let values: BTreeSet<&str> = self
            .series_in(start, end)
            .filter(|(s, _)| selector.is_none_or(|sel| sel.matches(&s.profile_type, &s.labels)))
            .filter_map(|(s, _)| {
                if name == crate::push::NAME_LABEL {
                    Some(s.profile_type.name.as_str())
                } else {
                    s.labels.get(name)
                }
            })
            .collect();
        values.into_iter().map(str::to_owned).collect()
    }

    /// Label names among series with data in the window, sorted.
    pub fn label_names(&self, start: UnixNanos, end: UnixNanos) -> Vec<String> {
        let mut names: BTreeSet<&str> = self
            .series_in(start, end)
            .flat_map(|(s, _)| s.labels.iter().map(|(k, _)| k))
            .collect();
        names.insert(crate::push::NAME_LABEL);
        names.into_iter().map(str::to_owned).collect()
    }

    /// Profile types with data in the window, sorted.
    pub fn profile_types(&self, start: UnixNanos, end: UnixNanos) -> Vec<ProfileType> {
        let types: BTreeSet<&ProfileType> = self
            .series_in(start, end)
            .map(|(s, _)| &s.profile_type)
            .collect();
        types.into_iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StackBuilder;

    fn profile(service: &str, start_s: i64, stacks: &[(&str, i64)]) -> Profile {
        let mut builder = StackBuilder::default();
        for (stack, value) in stacks {
            let frames = stack.split(';').map(|f| builder.intern(f)).collect();
            builder.push(frames, *value);
        }
        builder.finish(
            Labels::from_pairs([("service_name", service)]),
            ProfileType::cpu(),
            start_s * 1_000_000_000,
            (start_s + 10) * 1_000_000_000,
        )
    }

    #[test]
    fn eviction_frees_what_insert_counted_and_drops_empty_series() {
        let mut store = ProfileStore::default();
        store.insert(profile("a", 0, &[("main;x", 1)]));
        store.insert(profile("a", 20, &[("main;x", 1), ("main;y", 2)]));
        store.insert(profile("b", 10, &[("main;x", 1)]));
        store.insert(profile("a", 10, &[("main;x", 1)]));
        assert_eq!(store.profile_count(), 4);
        assert_eq!(store.series_count(), 2);
        assert_eq!(store.stacks.len(), 2, "repeated stacks are stored once");
        assert_eq!(store.oldest(), Some(0));
        let before = store.bytes();
        store.evict_before(15_000_000_000);
        assert_eq!(store.profile_count(), 1);
        assert_eq!(store.series_count(), 1);
        assert!(store.bytes() < before);
        store.evict_before(i64::MAX);
        assert_eq!(store.profile_count(), 0);
        assert_eq!(store.bytes(), 0, "the tables go with the last profile");
    }

    #[test]
    fn label_values_come_from_series_in_the_window() {
        let mut store = ProfileStore::default();
        store.insert(profile("mythical-server", 0, &[("a", 1)]));
        store.insert(profile("mythical-requester", 100, &[("a", 1)]));
        assert_eq!(
            store.label_values("service_name", None, 0, 200_000_000_000),
            ["mythical-requester", "mythical-server"]
        );
        assert_eq!(
            store.label_values("service_name", None, 50_000_000_000, 60_000_000_000),
            Vec::<String>::new()
        );
        assert_eq!(
            store.label_values("__name__", None, 0, i64::MAX),
            ["process_cpu"]
        );
    }
}
