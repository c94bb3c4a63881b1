//! Live aggregate definitions (`[[aggregates]]` in hogpipe.toml, or the API), their validation, and
//! the registry that replaces them while the graph runs.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Most properties an aggregate groups by (the event name is always a grouping key besides).
pub const MAX_GROUP_BY: usize = 2;

/// Longest definition id (ids appear in API paths and ClickHouse rows).
pub const MAX_ID_CHARS: usize = 64;

/// The width of a bucket. Buckets are aligned on UTC (a day is 00:00–24:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// 60 seconds.
    Minute,
    /// 3600 seconds.
    Hour,
    /// 86 400 seconds (UTC days).
    Day,
}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 3] = [Interval::Minute, Interval::Hour, Interval::Day];

    /// Length of a bucket in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Interval::Minute => 60_000,
            Interval::Hour => 3_600_000,
            Interval::Day => 86_400_000,
        }
    }

    /// Start (ms since the Unix epoch) of the bucket holding `ms`.
    pub fn bucket_start(self, ms: i64) -> i64 {
        let width = self.millis();
        ms.div_euclid(width) * width
    }

    /// The name used in config and the API (`minute`, `hour`, `day`).
    pub fn name(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Interval::Minute => 1,
            Interval::Hour => 2,
            Interval::Day => 4,
        }
    }
}

/// What an aggregate computes per bucket and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Number of events.
    Count,
    /// Number of different `distinct_id`s.
    UniqueDistinctIds,
    /// Sum of the numeric property named by `property`.
    Sum,
}

impl Measure {
    /// The name used in config and the API.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Count => "count",
            Measure::UniqueDistinctIds => "unique_distinct_ids",
            Measure::Sum => "sum",
        }
    }
}

/// One live aggregate: `measure` of the project's events named `event` (or of every event), per
/// `interval` bucket, grouped by the event name and up to two properties.
///
/// ```toml
/// [[aggregates]]
/// id = "revenue-by-plan"
/// project_id = 1
/// event = "purchase"
/// group_by = ["plan"]
/// measure = "sum"
/// property = "amount"
/// interval = "hour"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDef {
    /// Stable id: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub id: String,
    /// The project (team) whose events it aggregates.
    pub project_id: u64,
    /// Only events with this name; `None` aggregates every event (grouped by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Property names to group by besides the event name (0 to 2).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// What to compute.
    pub measure: Measure,
    /// The property summed by [`Measure::Sum`] (and only used by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// Bucket width.
    pub interval: Interval,
}

/// Why a definition (or a set of them) was refused. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The id is empty, too long or has characters other than letters, digits, `-`, `_`, `.`.
    #[error("aggregate id {id:?} is not valid: use 1 to {MAX_ID_CHARS} letters, digits, '-', '_' or '.'")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// More than [`MAX_GROUP_BY`] properties in `group_by`.
    #[error(
        "aggregate {id}: group_by has {count} properties; at most {MAX_GROUP_BY} are allowed (the event name is always a grouping key besides)"
    )]
    TooManyGroupKeys {
        /// Which definition.
        id: String,
        /// How many were given.
        count: usize,
    },
    /// An empty property name in `group_by`.
    #[error("aggregate {id}: group_by has an empty property name")]
    EmptyGroupKey {
        /// Which definition.
        id: String,
    },
    /// The same property twice in `group_by`.
    #[error("aggregate {id}: group_by names {property:?} twice")]
    DuplicateGroupKey {
        /// Which definition.
        id: String,
        /// The repeated property.
        property: String,
    },
    /// `measure = "sum"` without `property`.
    #[error("aggregate {id}: measure \"sum\" needs `property`, the numeric property to add up")]
    SumWithoutProperty {
        /// Which definition.
        id: String,
    },
    /// `property` given for a measure other than `sum`.
    #[error("aggregate {id}: `property` is only used by measure \"sum\"; remove it or use measure \"sum\" (this one is {measure:?})")]
    PropertyWithoutSum {
        /// Which definition.
        id: String,
        /// The measure given.
        measure: &'static str,
    },
    /// `property = ""`.
    #[error("aggregate {id}: `property` is empty")]
    EmptyProperty {
        /// Which definition.
        id: String,
    },
    /// `event = ""`.
    #[error("aggregate {id}: `event` is empty; leave it out to aggregate every event")]
    EmptyEvent {
        /// Which definition.
        id: String,
    },
    /// Two definitions with one id.
    #[error("two aggregates have the id {id:?}; ids must be unique")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// [`LiveRegistry::remove`] of an id that is not defined.
    #[error("no aggregate has the id {id:?}")]
    Unknown {
        /// The id asked for.
        id: String,
    },
}

impl AggregateDef {
    /// Checks the definition on its own (ids across a set are checked by [`validate_all`]).
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let id = || self.id.clone();
        let id_ok = !self.id.is_empty()
            && self.id.chars().count() <= MAX_ID_CHARS
            && self.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            return Err(DefinitionError::InvalidId { id: id() });
        }
        if self.group_by.len() > MAX_GROUP_BY {
            return Err(DefinitionError::TooManyGroupKeys { id: id(), count: self.group_by.len() });
        }
        for (i, key) in self.group_by.iter().enumerate() {
            if key.is_empty() {
                return Err(DefinitionError::EmptyGroupKey { id: id() });
            }
            if self.group_by[..i].contains(key) {
                return Err(DefinitionError::DuplicateGroupKey { id: id(), property: key.clone() });
            }
        }
        if self.event.as_deref() == Some("") {
            return Err(DefinitionError::EmptyEvent { id: id() });
        }
        match (self.measure, &self.property) {
            (Measure::Sum, None) => Err(DefinitionError::SumWithoutProperty { id: id() }),
            (Measure::Sum, Some(p)) if p.is_empty() => Err(DefinitionError::EmptyProperty { id: id() }),
            (Measure::Count | Measure::UniqueDistinctIds, Some(_)) => {
                Err(DefinitionError::PropertyWithoutSum { id: id(), measure: self.measure.name() })
            }
            _ => Ok(()),
        }
    }
}

/// Checks every definition and that ids are unique.
pub fn validate_all(definitions: &[AggregateDef]) -> Result<(), DefinitionError> {
    let mut ids = HashSet::with_capacity(definitions.len());
    for def in definitions {
        def.validate()?;
        if !ids.insert(def.id.as_str()) {
            return Err(DefinitionError::DuplicateId { id: def.id.clone() });
        }
    }
    Ok(())
}

/// An immutable, versioned set of definitions.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DefinitionSet {
    /// Increases with every change.
    pub version: u64,
    /// The definitions, valid and with unique ids.
    pub definitions: Vec<AggregateDef>,
}

/// The live set of definitions, replaced atomically while the graph runs. The dataflow's first
/// worker picks a new version up at its next round (within one `idle_wait` when idle); see
/// [`crate::live`] for what a change does to the aggregates.
#[derive(Debug, Default)]
pub struct LiveRegistry {
    current: RwLock<Arc<DefinitionSet>>,
}

impl LiveRegistry {
    /// A registry holding `definitions` as version 1.
    pub fn new(definitions: Vec<AggregateDef>) -> Result<LiveRegistry, DefinitionError> {
        validate_all(&definitions)?;
        Ok(LiveRegistry { current: RwLock::new(Arc::new(DefinitionSet { version: 1, definitions })) })
    }

    /// The current set.
    pub fn snapshot(&self) -> Arc<DefinitionSet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The definition with this id.
    pub fn get(&self, id: &str) -> Option<AggregateDef> {
        self.snapshot().definitions.iter().find(|d| d.id == id).cloned()
    }

    fn update(
        &self,
        change: impl FnOnce(&[AggregateDef]) -> Result<Vec<AggregateDef>, DefinitionError>,
    ) -> Result<u64, DefinitionError> {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let definitions = change(&guard.definitions)?;
        validate_all(&definitions)?;
        let version = guard.version + 1;
        *guard = Arc::new(DefinitionSet { version, definitions });
        Ok(version)
    }

    /// Replaces every definition; returns the new version. Nothing changes on error.
    pub fn replace(&self, definitions: Vec<AggregateDef>) -> Result<u64, DefinitionError> {
        self.update(|_| Ok(definitions))
    }

    /// Adds a definition or replaces the one with its id; returns the new version.
    pub fn upsert(&self, definition: AggregateDef) -> Result<u64, DefinitionError> {
        self.update(|current| {
            let mut definitions = current.to_vec();
            match definitions.iter_mut().find(|d| d.id == definition.id) {
                Some(existing) => *existing = definition,
                None => definitions.push(definition),
            }
            Ok(definitions)
        })
    }

    /// Removes a definition; returns the new version.
    pub fn remove(&self, id: &str) -> Result<u64, DefinitionError> {
        self.update(|current| {
            if !current.iter().any(|d| d.id == id) {
                return Err(DefinitionError::Unknown { id: id.to_string() });
            }
            Ok(current.iter().filter(|d| d.id != id).cloned().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: &str) -> AggregateDef {
        AggregateDef {
            id: id.into(),
            project_id: 1,
            event: None,
            group_by: vec![],
            measure: Measure::Count,
            property: None,
            interval: Interval::Minute,
        }
    }

    #[test]
    fn validation_names_what_to_fix() {
        let three = AggregateDef { group_by: vec!["a".into(), "b".into(), "c".into()], ..def("x") };
        let err = three.validate().unwrap_err();
        assert_eq!(err, DefinitionError::TooManyGroupKeys { id: "x".into(), count: 3 });
        assert!(err.to_string().contains("at most 2"), "{err}");

        let sum = AggregateDef { measure: Measure::Sum, ..def("s") };
        assert_eq!(sum.validate(), Err(DefinitionError::SumWithoutProperty { id: "s".into() }));
        assert!(sum.validate().unwrap_err().to_string().contains("needs `property`"));
        let counted = AggregateDef { property: Some("amount".into()), ..def("c") };
        assert!(matches!(counted.validate(), Err(DefinitionError::PropertyWithoutSum { .. })));
        assert!(matches!(def("").validate(), Err(DefinitionError::InvalidId { .. })));
        assert!(matches!(def("a/b").validate(), Err(DefinitionError::InvalidId { .. })));
        assert!(matches!(def(&"x".repeat(65)).validate(), Err(DefinitionError::InvalidId { .. })));
        let dup = AggregateDef { group_by: vec!["a".into(), "a".into()], ..def("d") };
        assert!(matches!(dup.validate(), Err(DefinitionError::DuplicateGroupKey { .. })));
        let empty_event = AggregateDef { event: Some(String::new()), ..def("e") };
        assert!(matches!(empty_event.validate(), Err(DefinitionError::EmptyEvent { .. })));
        assert_eq!(validate_all(&[def("a"), def("a")]), Err(DefinitionError::DuplicateId { id: "a".into() }));
        assert!(def("ok-1.x_y").validate().is_ok());
    }

    #[test]
    fn config_form() {
        let text = r#"{"id":"rev","project_id":2,"event":"purchase","group_by":["plan"],"measure":"sum","property":"amount","interval":"hour"}"#;
        let parsed: AggregateDef = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.measure, Measure::Sum);
        assert_eq!(parsed.interval, Interval::Hour);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), text);
        let unknown =
            serde_json::from_str::<AggregateDef>(r#"{"id":"x","project_id":1,"measure":"avg","interval":"hour"}"#);
        assert!(unknown.unwrap_err().to_string().contains("unknown variant `avg`"));
        let typo = serde_json::from_str::<AggregateDef>(
            r#"{"id":"x","project_id":1,"measure":"count","interval":"hour","groupby":[]}"#,
        );
        assert!(typo.unwrap_err().to_string().contains("unknown field `groupby`"));
    }

    #[test]
    fn registry_changes_are_atomic_and_validated() {
        let registry = LiveRegistry::new(vec![def("a")]).unwrap();
        assert_eq!(registry.upsert(def("b")).unwrap(), 2);
        assert_eq!(registry.upsert(AggregateDef { interval: Interval::Day, ..def("a") }).unwrap(), 3);
        assert_eq!(registry.get("a").unwrap().interval, Interval::Day);
        assert!(registry.upsert(AggregateDef { measure: Measure::Sum, ..def("c") }).is_err());
        assert_eq!(registry.snapshot().version, 3, "a refused change does not bump the version");
        assert_eq!(registry.remove("b").unwrap(), 4);
        assert_eq!(registry.remove("b"), Err(DefinitionError::Unknown { id: "b".into() }));
        assert_eq!(registry.snapshot().definitions, vec![AggregateDef { interval: Interval::Day, ..def("a") }]);
    }

    #[test]
    fn buckets_are_utc_aligned_before_1970_too() {
        assert_eq!(Interval::Hour.bucket_start(3_600_000 + 5), 3_600_000);
        assert_eq!(Interval::Minute.bucket_start(-1), -60_000);
        assert_eq!(Interval::Day.bucket_start(86_400_000 * 3 + 1), 86_400_000 * 3);
    }
}
