//! `hogpipe.toml`: the one configuration file, and what `hogpipe serve` does without one.
//!
//! Every key is optional; unknown keys are errors (with line and column) so a typo never passes
//! silently. See `README.md` ("Configuration") for the full list with defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where hogpipe keeps its data (event log, state). Default `./hogpipe-data`.
    pub data_dir: Option<PathBuf>,
    /// Capture endpoints.
    #[serde(default)]
    pub capture: CaptureSection,
    /// The event log.
    #[serde(default)]
    pub log: LogSection,
    /// Projects with their capture token and API keys.
    #[serde(default)]
    pub projects: Vec<Project>,
    /// The dataflow.
    #[serde(default)]
    pub dataflow: DataflowSection,
    /// Hog functions (transformations and destinations).
    #[serde(default)]
    pub functions: Vec<FunctionEntry>,
    /// The warehouse (embedded chDB by default).
    #[serde(default)]
    pub warehouse: hogpipe_warehouse::WarehouseConfig,
    /// Live aggregates' retention (`[live]`).
    #[serde(default)]
    pub live: hogpipe_dataflow::live::LiveConfig,
    /// Live aggregates kept up to date as events arrive (`[[aggregates]]`).
    #[serde(default)]
    pub aggregates: Vec<hogpipe_dataflow::live::AggregateDef>,
    /// Native sinks every processed event also goes to (`type = "file" | "kafka" | "postgres" | "webhook"`).
    #[serde(default)]
    pub sinks: Vec<hogpipe_destinations::sinks::SinkConfig>,
    /// The state store (`[state]`): SQLite in the data dir, or PostgreSQL with `url`.
    #[serde(default)]
    pub state: hogpipe_api::store::StoreConfig,
    /// Limits of the query API (`[query]`).
    #[serde(default)]
    pub query: hogpipe_api::QueryLimits,
}

/// `[dataflow]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataflowSection {
    /// Run the dataflow in `serve`. Default true.
    pub enabled: bool,
    /// Timely workers; default the number of cores.
    pub workers: Option<usize>,
    /// Records read per partition per round. Default 1000.
    pub batch_size: usize,
    /// Append processed events as JSON lines to this file (relative to the data dir). Default: none.
    pub events_file: Option<PathBuf>,
    /// Append `[function id, event]` of every routed event to this file (relative to the data dir).
    pub invocations_file: Option<PathBuf>,
}

impl Default for DataflowSection {
    fn default() -> Self {
        DataflowSection { enabled: true, workers: None, batch_size: 1000, events_file: None, invocations_file: None }
    }
}

/// `[[functions]]`: one Hog function.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionEntry {
    /// Stable id (used in logs, metrics and the API).
    pub id: String,
    /// Project id it runs for.
    pub project: u64,
    /// `"transformation"` or `"destination"`.
    #[serde(rename = "type")]
    pub kind: FunctionType,
    /// Display name; default the id.
    pub name: Option<String>,
    /// A destination template id (`template-slack`, see `hogpipe destinations list`): the code
    /// comes from the template and `inputs` are checked against its schema …
    pub template: Option<String>,
    /// … or a `.hog` file (relative to the config file's folder) …
    pub file: Option<PathBuf>,
    /// … or the Hog source inline.
    pub hog: Option<String>,
    /// Position in the project's transformation chain (lower runs first). Default 0.
    #[serde(default)]
    pub order: i32,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hog expression over `event`, `properties`, `distinct_id`, `timestamp`, `elements_chain`,
    /// `person`; the event is routed to a destination only when it is true.
    pub filter: Option<String>,
    /// The `inputs` global.
    #[serde(default)]
    pub inputs: serde_json::Map<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// Function types in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionType {
    /// Edits or drops events.
    Transformation,
    /// Receives matching events.
    Destination,
}

/// `[capture]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Address to listen on. Default `0.0.0.0`.
    pub host: String,
    /// Port. Default 8000.
    pub port: u16,
    /// Largest body on the single-event endpoints, bytes. Default 2 MiB.
    pub max_body_bytes: usize,
    /// Largest body on `/batch`, bytes. Default 20 MiB.
    pub max_batch_body_bytes: usize,
    /// Largest decoded payload on the single-event endpoints, bytes. Default 16 MiB.
    pub max_decoded_bytes: usize,
    /// Largest decoded payload on `/batch`, bytes. Default 64 MiB.
    pub max_batch_decoded_bytes: usize,
    /// Largest single event, bytes. Default 1 MiB.
    pub max_event_bytes: usize,
    /// Bodies in flight at once before new requests get 503, bytes. Default 256 MiB.
    pub max_inflight_bytes: usize,
    /// Events per second per project token; 0 (default) means unlimited.
    pub rate_limit_per_second: f64,
    /// Burst size for the rate limit; default 10 × the per-second rate.
    pub rate_limit_burst: Option<f64>,
}

impl Default for CaptureSection {
    fn default() -> Self {
        let d = hogpipe_capture::server::CaptureConfig::default();
        CaptureSection {
            host: "0.0.0.0".into(),
            port: 8000,
            max_body_bytes: d.max_body_bytes,
            max_batch_body_bytes: d.max_batch_body_bytes,
            max_decoded_bytes: d.max_decoded_bytes,
            max_batch_decoded_bytes: d.max_batch_decoded_bytes,
            max_event_bytes: d.max_event_bytes,
            max_inflight_bytes: d.max_inflight_bytes,
            rate_limit_per_second: 0.0,
            rate_limit_burst: None,
        }
    }
}

impl CaptureSection {
    /// The capture crate's configuration.
    pub fn to_capture_config(&self) -> hogpipe_capture::server::CaptureConfig {
        hogpipe_capture::server::CaptureConfig {
            max_body_bytes: self.max_body_bytes,
            max_batch_body_bytes: self.max_batch_body_bytes,
            max_decoded_bytes: self.max_decoded_bytes,
            max_batch_decoded_bytes: self.max_batch_decoded_bytes,
            max_event_bytes: self.max_event_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
            rate_limit: (self.rate_limit_per_second > 0.0).then(|| hogpipe_capture::server::RateLimit {
                events_per_second: self.rate_limit_per_second,
                burst: self.rate_limit_burst.unwrap_or(self.rate_limit_per_second * 10.0).max(1.0),
            }),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `"wal"` (embedded, default) or `"kafka"`.
    pub backend: LogBackend,
    /// Partitions of the embedded log. Default 8.
    pub partitions: u32,
    /// Segment file size, bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// Keep at most this many bytes per partition (whole segments are deleted). Default: no limit.
    pub retention_bytes: Option<u64>,
    /// Delete segments older than this many hours. Default 168 (7 days).
    pub retention_hours: Option<f64>,
    /// Bytes accepted but not yet durable before capture answers 503. Default 64 MiB.
    pub max_pending_bytes: usize,
    /// `[log.kafka]`, used when `backend = "kafka"`.
    pub kafka: KafkaSection,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            backend: LogBackend::Wal,
            partitions: 8,
            segment_bytes: 64 << 20,
            retention_bytes: None,
            retention_hours: Some(168.0),
            max_pending_bytes: 64 << 20,
            kafka: KafkaSection::default(),
        }
    }
}

/// Which event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// The embedded segmented WAL under the data dir.
    Wal,
    /// Kafka brokers.
    Kafka,
}

/// `[log.kafka]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic for live events. Default PostHog's `events_plugin_ingestion`.
    pub topic: String,
    /// Topic for `historical_migration` batches. Default `events_plugin_ingestion_historical`.
    pub historical_topic: String,
    /// Extra librdkafka settings.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: "localhost:9092".into(),
            topic: "events_plugin_ingestion".into(),
            historical_topic: "events_plugin_ingestion_historical".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// `[[projects]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Project id (PostHog's team id).
    pub id: u64,
    /// Display name.
    #[serde(default = "default_project_name")]
    pub name: String,
    /// Capture token (`phc_...`): write-only, for SDKs.
    pub token: String,
    /// Personal API keys (`phx_...`) for `/api`.
    #[serde(default)]
    pub api_keys: Vec<String>,
}

fn default_project_name() -> String {
    "Default".into()
}

impl Config {
    /// Reads and checks a config file. Errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| line_col(text, span.start));
            let message = e.message().trim_end().to_string();
            match at {
                Some((line, col)) => anyhow::anyhow!("{origin}:{line}:{col}: {message}"),
                None => anyhow::anyhow!("{origin}: {message}"),
            }
        })?;
        config.check(origin)?;
        Ok(config)
    }

    fn check(&self, origin: &str) -> Result<()> {
        let mut ids = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        for p in &self.projects {
            if !ids.insert(p.id) {
                bail!("{origin}: project id {} is declared twice", p.id);
            }
            if p.token.trim().is_empty() {
                bail!("{origin}: project {} has an empty token", p.id);
            }
            if !tokens.insert(p.token.as_str()) {
                bail!("{origin}: token {} is used by two projects", p.token);
            }
        }
        if let Err(e) = self.query.validate() {
            bail!("{origin}: {e}");
        }
        if self.log.partitions == 0 {
            bail!("{origin}: log.partitions must be at least 1");
        }
        if self.log.backend == LogBackend::Kafka && self.log.kafka.brokers.trim().is_empty() {
            bail!("{origin}: log.kafka.brokers is empty");
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A random token with a prefix, from the OS's randomness (uuid v4 uses it).
pub fn random_secret(prefix: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &(a + &b)[..43])
}

/// Projects to serve: the config's, else the ones generated on a previous start
/// (`<data dir>/projects.toml`), else a new project with a fresh token and API key, saved there
/// and printed so the user can configure an SDK.
pub fn projects_or_generate(config: &Config, data_dir: &Path) -> Result<Vec<Project>> {
    if !config.projects.is_empty() {
        return Ok(config.projects.clone());
    }
    let path = data_dir.join("projects.toml");
    if path.exists() {
        let generated = Config::load(&path)?;
        if !generated.projects.is_empty() {
            return Ok(generated.projects);
        }
    }
    let project =
        Project { id: 1, name: "Default".into(), token: random_secret("phc_"), api_keys: vec![random_secret("phx_")] };
    let file = Config { projects: vec![project.clone()], ..Config::default() };
    let text = format!(
        "# Generated by hogpipe on first start. Copy into hogpipe.toml to keep it under version control.\n{}",
        toml::to_string(&GeneratedProjects { projects: &file.projects })?
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("hogpipe: created project {} \"{}\"", project.id, project.name);
    eprintln!("hogpipe:   capture token (for SDKs): {}", project.token);
    eprintln!("hogpipe:   personal API key (for /api): {}", project.api_keys[0]);
    eprintln!("hogpipe:   saved in {}", path.display());
    Ok(vec![project])
}

#[derive(Serialize)]
struct GeneratedProjects<'a> {
    projects: &'a [Project],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::parse("", "x.toml").unwrap();
        assert_eq!(c.capture.port, 8000);
        assert_eq!(c.log.backend, LogBackend::Wal);
        assert!(c.projects.is_empty());
    }

    #[test]
    fn query_limits_are_read_and_checked() {
        let c = Config::parse("[query]\nmax_limit = 50000\nmax_execution_time_secs = 5\n", "x.toml").unwrap();
        assert_eq!(c.query.max_limit, 50_000);
        assert_eq!(c.query.max_execution_time_secs, 5);
        assert_eq!(c.query.default_limit, 100, "unset keys keep their defaults");
        let err = Config::parse("[query]\ndefault_limit = 20\nmax_limit = 10\n", "x.toml").unwrap_err();
        assert!(
            format!("{err:#}").contains("query.max_limit (10) must be at least query.default_limit (20)"),
            "{err:#}"
        );
        let err = Config::parse("[query]\nmax_rows = 10\n", "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("max_rows"), "{err:#}");
        for (text, message) in [
            ("default_limit = 0", "query.default_limit must be at least 1"),
            ("max_execution_time_secs = 0", "query.max_execution_time_secs must be between 1 and 3600"),
            ("max_execution_time_secs = 3601", "query.max_execution_time_secs must be between 1 and 3600"),
        ] {
            let err = Config::parse(&format!("[query]\n{text}\n"), "x.toml").unwrap_err();
            assert!(format!("{err:#}").contains(message), "{text}: {err:#}");
        }
    }

    #[test]
    fn projects_and_sections() {
        let c = Config::parse(
            "data_dir = \"/tmp/x\"\n[capture]\nport = 9000\nrate_limit_per_second = 5\n[log]\nbackend = \"kafka\"\n[log.kafka]\nbrokers = \"b:1\"\n[[projects]]\nid = 2\ntoken = \"phc_a\"\napi_keys = [\"phx_b\"]\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.capture.port, 9000);
        assert_eq!(c.log.kafka.brokers, "b:1");
        assert_eq!(c.projects[0].name, "Default");
        assert_eq!(c.capture.to_capture_config().rate_limit.unwrap().burst, 50.0);
    }

    #[test]
    fn unknown_key_is_located() {
        let err = Config::parse("[capture]\nport = 1\nprot = 2\n", "h.toml").unwrap_err().to_string();
        assert!(err.starts_with("h.toml:3:1:"), "{err}");
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn wrong_type_is_located() {
        let err = Config::parse("[capture]\nport = \"x\"\n", "h.toml").unwrap_err().to_string();
        assert!(err.starts_with("h.toml:2:8:"), "{err}");
    }

    #[test]
    fn duplicate_tokens_rejected() {
        let err = Config::parse("[[projects]]\nid = 1\ntoken = \"t\"\n[[projects]]\nid = 2\ntoken = \"t\"\n", "h.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("used by two projects"), "{err}");
    }

    #[test]
    fn generated_project_is_reused() {
        let dir = std::env::temp_dir().join(format!("hogpipe-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = projects_or_generate(&Config::default(), &dir).unwrap();
        let second = projects_or_generate(&Config::default(), &dir).unwrap();
        assert_eq!(first, second);
        assert!(first[0].token.starts_with("phc_") && first[0].token.len() == 47);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n# hogpipe.toml").expect("the README has the example") + 8;
        let end = start + readme[start..].find("```").unwrap();
        let c = Config::parse(&readme[start..end], "README.md").unwrap();
        assert_eq!(c.projects.len(), 1);
        assert_eq!(c.log.kafka.properties["security.protocol"], "plaintext");
    }

    #[test]
    fn readme_dataflow_example_parses_and_compiles() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n[dataflow]").expect("the README has the dataflow example") + 8;
        let end = start + readme[start..].find("```").unwrap();
        let text = format!("[[projects]]\nid = 1\ntoken = \"phc_x\"\n{}", &readme[start..end]);
        let c = Config::parse(&text, "README.md").unwrap();
        let dir = std::env::temp_dir().join(format!("hogpipe-readme-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("functions")).unwrap();
        std::fs::write(dir.join("functions/hash-email.hog"), "return event").unwrap();
        let specs = crate::functions::compile_all(&c, &dir).unwrap();
        assert_eq!(specs.len(), 2);
        assert!(specs[1].filter.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The README's other configuration examples: warehouse, aggregates, a template destination
    /// and the native sinks all parse (and the destination compiles with its inputs).
    #[test]
    fn readme_section_examples_parse() {
        let readme = include_str!("../../README.md");
        let block = |head: &str| -> &str {
            let start = readme.find(&format!("```toml\n{head}")).unwrap_or_else(|| panic!("README has {head}")) + 8;
            let end = start + readme[start..].find("```").unwrap();
            &readme[start..end]
        };
        let w = Config::parse(block("[warehouse]"), "README.md").unwrap();
        assert_eq!(w.warehouse.backend, "chdb");
        let a = Config::parse(block("[[aggregates]]"), "README.md").unwrap();
        assert_eq!(a.aggregates.len(), 1);
        hogpipe_dataflow::live::Live::new(a.live.clone(), a.aggregates.clone()).unwrap();
        let s = Config::parse(block("[[sinks]]"), "README.md").unwrap();
        assert_eq!(s.sinks.len(), 4);
        let f = Config::parse(block("[[functions]]\nid = \"orders-to-slack\""), "README.md").unwrap();
        let dests = crate::functions::destinations(&f, std::path::Path::new(".")).unwrap();
        assert_eq!(dests.len(), 1);
        assert_eq!(crate::functions::compile_all(&f, std::path::Path::new(".")).unwrap().len(), 1);
    }
}
