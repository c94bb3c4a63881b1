//! Persons, as PostHog's ingestion keeps them: every distinct id belongs to a person; `$identify`
//! (with `$anon_distinct_id`) and `$create_alias` (with `alias`) merge two distinct ids into one
//! person; `$set`, `$set_once` and `$unset` in an event's properties edit the person's properties.
//! Each event is stored with the person id and properties it had at ingestion (person-on-events).
//!
//! The map lives in memory and is loaded from `persons` / `person_distinct_ids` when the writer
//! starts; every change becomes a row with a higher `version` (the tables are
//! `ReplacingMergeTree(version)`), written with the events it came from. Replaying an event after
//! a crash changes nothing more: a merge already done is a no-op and `$set` sets the same values.

use std::collections::HashMap as StdHashMap;

/// Maps keyed by distinct ids and person ids, looked up for every event: foldhash (seeded per
/// process) instead of SipHash.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

use serde_json::{Map, Value as Json};

use crate::backend::WarehouseError;
use crate::Warehouse;

/// One person.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Its uuid (text).
    pub id: String,
    /// Properties.
    pub properties: Map<String, Json>,
    /// Set by `$identify` / `$create_alias`.
    pub is_identified: bool,
    /// When first seen (ClickHouse text form).
    pub created_at: String,
    /// Bumped on every change.
    pub version: u64,
    /// `properties` as JSON text, kept current (every event of the person carries it).
    pub properties_json: String,
}

/// A change to write: a person row or a distinct-id row.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonChange {
    /// The person's current state (or its deletion after a merge).
    Person {
        /// Team.
        team_id: u64,
        /// The person as it is now.
        person: Person,
        /// Merged into another person.
        deleted: bool,
    },
    /// A distinct id now points at `person_id`.
    DistinctId {
        /// Team.
        team_id: u64,
        /// The distinct id.
        distinct_id: String,
        /// Its person.
        person_id: String,
        /// Bumped on every change.
        version: u64,
    },
}

/// Every team's persons and distinct ids.
#[derive(Debug, Default)]
pub struct Persons {
    /// team → distinct id → (person id, version).
    by_distinct_id: HashMap<u64, HashMap<String, (String, u64)>>,
    people: HashMap<String, Person>,
}

fn text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Persons {
    /// Loads every live person and distinct id from the warehouse.
    pub fn load(warehouse: &Warehouse) -> Result<Persons, WarehouseError> {
        let mut persons = Persons::default();
        let people = warehouse.query(
            "SELECT toString(id), team_id, properties, is_identified, toString(created_at), version \
             FROM persons FINAL WHERE is_deleted = 0",
        )?;
        for r in people.results {
            let id = r.first().and_then(Json::as_str).unwrap_or_default().to_string();
            let properties = r
                .get(2)
                .and_then(Json::as_str)
                .and_then(|s| serde_json::from_str::<Map<String, Json>>(s).ok())
                .unwrap_or_default();
            let number =
                |v: Option<&Json>| v.and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(0);
            let properties_json = serde_json::to_string(&properties).unwrap_or_default();
            let person = Person {
                id: id.clone(),
                properties_json,
                properties,
                is_identified: number(r.get(3)) == 1,
                created_at: r.get(4).and_then(Json::as_str).unwrap_or_default().to_string(),
                version: number(r.get(5)),
            };
            persons.people.insert(id, person);
        }
        let ids = warehouse.query(
            "SELECT team_id, distinct_id, toString(person_id), version FROM person_distinct_ids FINAL WHERE is_deleted = 0",
        )?;
        for r in ids.results {
            let team = r.first().and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(0);
            let distinct_id = r.get(1).and_then(Json::as_str).unwrap_or_default().to_string();
            let person_id = r.get(2).and_then(Json::as_str).unwrap_or_default().to_string();
            let version = r.get(3).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(0);
            persons.by_distinct_id.entry(team).or_default().insert(distinct_id, (person_id, version));
        }
        Ok(persons)
    }

    /// How many persons exist (all teams).
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The person of a distinct id.
    pub fn person_of(&self, team: u64, distinct_id: &str) -> Option<&Person> {
        let (id, _) = self.by_distinct_id.get(&team)?.get(distinct_id)?;
        self.people.get(id)
    }

    fn ensure(&mut self, team: u64, distinct_id: &str, now: &str, changes: &mut Vec<PersonChange>) -> String {
        if let Some((id, _)) = self.by_distinct_id.get(&team).and_then(|m| m.get(distinct_id)) {
            if self.people.contains_key(id) {
                return id.clone();
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let person = Person {
            id: id.clone(),
            properties: Map::new(),
            is_identified: false,
            created_at: now.to_string(),
            version: 0,
            properties_json: "{}".into(),
        };
        changes.push(PersonChange::Person { team_id: team, person: person.clone(), deleted: false });
        self.people.insert(id.clone(), person);
        self.point(team, distinct_id, &id, changes);
        id
    }

    fn point(&mut self, team: u64, distinct_id: &str, person_id: &str, changes: &mut Vec<PersonChange>) {
        let ids = self.by_distinct_id.entry(team).or_default();
        let version = ids.get(distinct_id).map_or(0, |(_, v)| v + 1);
        ids.insert(distinct_id.to_string(), (person_id.to_string(), version));
        changes.push(PersonChange::DistinctId {
            team_id: team,
            distinct_id: distinct_id.to_string(),
            person_id: person_id.to_string(),
            version,
        });
    }

    /// Makes `other`'s person the same as `distinct_id`'s (identify / alias); true when two
    /// persons became one (the target's properties may have changed).
    fn merge(&mut self, team: u64, distinct_id: &str, other: &str, now: &str, changes: &mut Vec<PersonChange>) -> bool {
        if other == distinct_id {
            return false;
        }
        let target = self.ensure(team, distinct_id, now, changes);
        let source = match self.by_distinct_id.get(&team).and_then(|m| m.get(other)) {
            Some((id, _)) if self.people.contains_key(id) => id.clone(),
            _ => {
                // The other id is new: it joins the person.
                self.point(team, other, &target, changes);
                return false;
            }
        };
        if source == target {
            return false;
        }
        let Some(from) = self.people.remove(&source) else { return false };
        let moved: Vec<String> = self
            .by_distinct_id
            .get(&team)
            .map(|ids| ids.iter().filter(|(_, (p, _))| *p == source).map(|(d, _)| d.clone()).collect())
            .unwrap_or_default();
        for d in moved {
            self.point(team, &d, &target, changes);
        }
        if let Some(into) = self.people.get_mut(&target) {
            for (k, v) in &from.properties {
                into.properties.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        changes.push(PersonChange::Person {
            team_id: team,
            person: Person { version: from.version + 1, ..from },
            deleted: true,
        });
        true
    }

    /// Applies one event: merges, property updates; returns the person (id and properties) the
    /// event is stored with, and appends the rows to write.
    pub fn process(
        &mut self,
        team: u64,
        event: &str,
        distinct_id: &str,
        properties: &Map<String, Json>,
        now: &str,
        changes: &mut Vec<PersonChange>,
    ) -> (String, String) {
        let mut identified = false;
        let mut changed = false;
        match event {
            "$identify" => {
                if let Some(anon) = properties.get("$anon_distinct_id").and_then(text) {
                    changed |= self.merge(team, distinct_id, &anon, now, changes);
                }
                identified = true;
            }
            "$create_alias" | "$merge_dangerously" => {
                if let Some(alias) = properties.get("alias").and_then(text) {
                    changed |= self.merge(team, distinct_id, &alias, now, changes);
                }
                identified = true;
            }
            _ => {}
        }
        let id = self.ensure(team, distinct_id, now, changes);
        let Some(person) = self.people.get_mut(&id) else { return (id, String::new()) };
        if identified && !person.is_identified {
            person.is_identified = true;
            changed = true;
        }
        if let Some(Json::Object(set)) = properties.get("$set") {
            for (k, v) in set {
                if person.properties.get(k) != Some(v) {
                    person.properties.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
        if let Some(Json::Object(set_once)) = properties.get("$set_once") {
            for (k, v) in set_once {
                if !person.properties.contains_key(k) {
                    person.properties.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
        if let Some(Json::Array(unset)) = properties.get("$unset") {
            for k in unset.iter().filter_map(Json::as_str) {
                changed |= person.properties.remove(k).is_some();
            }
        }
        if changed {
            person.version += 1;
            person.properties_json = serde_json::to_string(&person.properties).unwrap_or_default();
            changes.push(PersonChange::Person { team_id: team, person: person.clone(), deleted: false });
        }
        let props = person.properties_json.clone();
        (id, props)
    }
}
