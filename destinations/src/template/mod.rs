//! Destination templates as data, in PostHog's shape.
//!
//! A template is two files, `templates/<id>.toml` (name, description, type, category, status and
//! the inputs schema) and `templates/<id>.hog` (the code), registered in the one explicit list of
//! [`list`](self) so the binary carries them; nothing scans directories at run time.
//!
//! This module owns parsing and checking templates; [`inputs`] owns validating a function's
//! inputs against a schema and rendering them per event. Running a function is
//! [`crate::invoke`]'s job.

pub mod inputs;
mod list;

use std::collections::HashSet;
use std::sync::OnceLock;

use hog_lang::{compile, CompileOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

pub use inputs::{CompiledInputs, InputError, InputsError, RenderError};

/// What replaces a secret input's value wherever inputs are shown ([`Template::redact`]), and a
/// secret's text in a function's log lines.
pub const REDACTED: &str = "***REDACTED***";

/// What kind of function a template makes (PostHog's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionType {
    /// Receives matching events and sends them somewhere.
    Destination,
    /// Edits or drops events before they are stored.
    Transformation,
    /// Turns an incoming webhook request into events.
    SourceWebhook,
    /// Runs in the browser (not run by hogpipe).
    SiteDestination,
    /// Receives PostHog's internal events (alerts, …).
    InternalDestination,
}

impl FunctionType {
    /// The name as written in a template (`destination`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionType::Destination => "destination",
            FunctionType::Transformation => "transformation",
            FunctionType::SourceWebhook => "source_webhook",
            FunctionType::SiteDestination => "site_destination",
            FunctionType::InternalDestination => "internal_destination",
        }
    }
}

/// How ready a template is (PostHog's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ready for use.
    Stable,
    /// Works, may still change.
    Beta,
    /// Experimental.
    Alpha,
    /// Kept for existing functions; do not start new ones from it.
    Deprecated,
}

/// The type of one input (PostHog's input types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// Text; may hold a Hog template (`'Hi {person.name}'`).
    String,
    /// A number.
    Number,
    /// One of the schema's `choices`.
    Choice,
    /// Any JSON value; every string inside may hold a Hog template.
    Json,
    /// A JSON object; every string inside may hold a Hog template.
    Dictionary,
    /// `true` / `false` (or a Hog template that yields one).
    Boolean,
    /// The credentials of a connected account. PostHog stores an integration id and looks the
    /// account up; hogpipe has no integration store, so the value is the credentials object itself
    /// (e.g. `{access_token = "xoxb-…"}`), and it is treated as secret.
    Integration,
    /// A setting of a connected account (a Slack channel id, …), as text.
    IntegrationField,
}

impl InputType {
    /// The name as written in a template (`string`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Choice => "choice",
            InputType::Json => "json",
            InputType::Dictionary => "dictionary",
            InputType::Boolean => "boolean",
            InputType::Integration => "integration",
            InputType::IntegrationField => "integration_field",
        }
    }

    /// Whether string values of this type are compiled as Hog templates (PostHog's list).
    pub fn is_templated(self) -> bool {
        matches!(self, InputType::String | InputType::Json | InputType::Dictionary | InputType::Boolean)
    }
}

/// One allowed value of a `choice` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// Shown to users.
    pub label: String,
    /// Stored in the input.
    pub value: Json,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One input of a template (PostHog's `inputs_schema` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSchema {
    /// The name the code reads (`inputs.<key>`).
    pub key: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Shown to users.
    pub label: String,
    /// Longer help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A value (other than `null` or `""`) must be given, or come from `default`.
    #[serde(default)]
    pub required: bool,
    /// Encrypted at rest, never returned by the API, redacted from logs.
    #[serde(default)]
    pub secret: bool,
    /// Not shown in forms (still settable).
    #[serde(default)]
    pub hidden: bool,
    /// Used when the input is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Json>,
    /// The allowed values of a `choice` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<Choice>>,
    /// Whether strings are Hog templates (PostHog's `templating`, on unless set to false).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub templating: bool,
    /// For `integration` inputs: which service (`slack`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// For `integration_field` inputs: the key of the integration input it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_key: Option<String>,
    /// For `integration_field` inputs: which field of the integration (`slack_channel`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_field: Option<String>,
}

impl InputSchema {
    /// Whether the value must be kept from users and logs (secret inputs and integrations).
    pub fn is_sensitive(&self) -> bool {
        self.secret || self.kind == InputType::Integration
    }
}

/// A destination template (PostHog's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// PostHog's id (`template-webhook`); also the file name.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// What kind of function it makes.
    #[serde(rename = "type")]
    pub kind: FunctionType,
    /// Categories (`Custom`, `Customer Success`, …).
    pub category: Vec<String>,
    /// How ready it is.
    pub status: Status,
    /// The Hog code.
    pub code: String,
    /// The inputs it reads.
    pub inputs_schema: Vec<InputSchema>,
}

/// The `.toml` half of a template.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    id: String,
    name: String,
    description: String,
    #[serde(rename = "type")]
    kind: FunctionType,
    #[serde(default)]
    category: Vec<String>,
    status: Status,
    #[serde(default)]
    inputs_schema: Vec<InputSchema>,
}

/// Why a template is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The `.toml` file does not parse or has wrong fields.
    #[error("{file}:{line}:{column}: {message}")]
    Toml {
        /// `templates/<id>.toml`.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The manifest's `id` is not the file's name.
    #[error("templates/{file_id}.toml: `id` is {id:?} but the file is named after {file_id:?}")]
    IdMismatch {
        /// The name the list gives.
        file_id: String,
        /// The `id` in the file.
        id: String,
    },
    /// The schema itself is inconsistent.
    #[error("templates/{id}.toml: input `{key}`: {problem}")]
    Schema {
        /// Template id.
        id: String,
        /// The input.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The code does not compile.
    #[error("templates/{id}.hog does not compile:\n{rendered}")]
    Code {
        /// Template id.
        id: String,
        /// The diagnostics, with line:col and a caret.
        rendered: String,
    },
    /// Two templates share an id.
    #[error("template id {0:?} is listed twice")]
    Duplicate(String),
}

impl Template {
    /// Builds a template from its two files; `file_id` is the name both files share.
    pub fn parse(file_id: &str, manifest: &str, code: &str) -> Result<Template, TemplateError> {
        let m: Manifest = toml::from_str(manifest).map_err(|e| {
            let (line, column) = e.span().map(|s| hog_lang::diagnostics::line_col(manifest, s.start)).unwrap_or((1, 1));
            TemplateError::Toml {
                file: format!("templates/{file_id}.toml"),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        if m.id != file_id {
            return Err(TemplateError::IdMismatch { file_id: file_id.to_string(), id: m.id });
        }
        let template = Template {
            id: m.id,
            name: m.name,
            description: m.description,
            kind: m.kind,
            category: m.category,
            status: m.status,
            code: code.to_string(),
            inputs_schema: m.inputs_schema,
        };
        template.check_schema()?;
        Ok(template)
    }

    fn check_schema(&self) -> Result<(), TemplateError> {
        let err =
            |key: &str, problem: String| TemplateError::Schema { id: self.id.clone(), key: key.to_string(), problem };
        let mut seen = HashSet::new();
        for item in &self.inputs_schema {
            if !seen.insert(item.key.as_str()) {
                return Err(err(&item.key, "listed twice".into()));
            }
            match (&item.kind, &item.choices) {
                (InputType::Choice, None) => return Err(err(&item.key, "a `choice` input needs `choices`".into())),
                (InputType::Choice, Some(c)) if c.is_empty() => {
                    return Err(err(&item.key, "`choices` is empty".into()));
                }
                (kind, Some(_)) if *kind != InputType::Choice => {
                    return Err(err(
                        &item.key,
                        format!("`choices` is only for `choice` inputs, not `{}`", kind.as_str()),
                    ));
                }
                _ => {}
            }
        }
        // Defaults must pass the same type checks as users' values.
        for item in &self.inputs_schema {
            if let Some(default) = &item.default {
                if let Err(e) = inputs::check_value(item, default) {
                    return Err(err(&item.key, format!("default: {e}")));
                }
            }
        }
        Ok(())
    }

    /// Compiles the code with hogpipe's compiler (the bytecode a function made from it runs).
    pub fn compile(&self) -> Result<hog_lang::compiler::Code, TemplateError> {
        compile(&self.code, &CompileOptions::default()).map_err(|d| TemplateError::Code {
            id: self.id.clone(),
            rendered: d.render(&self.code, &format!("templates/{}.hog", self.id)),
        })
    }

    /// The input of this key.
    pub fn input(&self, key: &str) -> Option<&InputSchema> {
        self.inputs_schema.iter().find(|i| i.key == key)
    }

    /// Checks a user's inputs against the schema (required present, types, choices, no unknown
    /// keys) and returns them with defaults applied. Every problem is reported, each naming its key.
    pub fn validate_inputs(&self, inputs: &Map<String, Json>) -> Result<Map<String, Json>, InputsError> {
        inputs::validate(&self.inputs_schema, inputs, true)
    }

    /// Validates, applies defaults and compiles every templated string of the inputs, once, for
    /// rendering per event.
    pub fn compile_inputs(&self, inputs: &Map<String, Json>) -> Result<CompiledInputs, InputsError> {
        CompiledInputs::new(&self.inputs_schema, inputs)
    }

    /// The inputs with every secret (and integration) value replaced by [`REDACTED`], for showing.
    pub fn redact(&self, inputs: &Map<String, Json>) -> Map<String, Json> {
        inputs::redact(&self.inputs_schema, inputs)
    }
}

/// Every listed template, parsed once. A template that fails to load is logged and left out
/// (the test `templates_all_load` keeps that from happening).
pub fn templates() -> &'static [Template] {
    static ALL: OnceLock<Vec<Template>> = OnceLock::new();
    ALL.get_or_init(|| {
        load_all()
            .into_iter()
            .filter_map(|r| match r {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "skipping a destination template that does not load");
                    None
                }
            })
            .collect()
    })
}

/// The template of this id.
pub fn template(id: &str) -> Option<&'static Template> {
    templates().iter().find(|t| t.id == id)
}

/// Loads and checks every listed template: each parses, its code compiles, its ids are unique
/// and match the file names, and each templated default compiles.
pub fn load_all() -> Vec<Result<Template, TemplateError>> {
    let mut seen = HashSet::new();
    list::TEMPLATES
        .iter()
        .map(|(id, manifest, code)| {
            if !seen.insert(*id) {
                return Err(TemplateError::Duplicate(id.to_string()));
            }
            let t = Template::parse(id, manifest, code)?;
            t.compile()?;
            let defaults: Map<String, Json> =
                t.inputs_schema.iter().filter_map(|i| i.default.as_ref().map(|d| (i.key.clone(), d.clone()))).collect();
            if let Err(errors) = inputs::CompiledInputs::compile_only(&t.inputs_schema, &defaults) {
                let e = errors.0.into_iter().next();
                if let Some(e) = e {
                    return Err(TemplateError::Schema {
                        id: t.id.clone(),
                        key: e.key().to_string(),
                        problem: format!("default: {e}"),
                    });
                }
            }
            Ok(t)
        })
        .collect()
}

/// The ids of every listed template, in list order (whether or not it loads).
pub fn listed_ids() -> impl Iterator<Item = &'static str> {
    list::TEMPLATES.iter().map(|(id, ..)| *id)
}
