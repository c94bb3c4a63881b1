//! Turning `[[functions]]` of the config into compiled function specs for the dataflow.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hog_lang::{compile, CompileOptions};
use hogpipe_dataflow::functions::{FunctionKind, FunctionSpec};
use hogpipe_destinations::invoke::Destination;

use crate::config::{Config, FunctionEntry, FunctionType};

/// Compiles every function of the config. `base` is the config file's folder (for `file`).
/// Any error (a missing file, a compile error with `file:line:column`) fails the whole set, so a
/// reload never half-applies.
pub fn compile_all(config: &Config, base: &Path) -> Result<Vec<FunctionSpec>> {
    let mut ids = std::collections::HashSet::new();
    let mut out = Vec::new();
    for entry in &config.functions {
        if !ids.insert(entry.id.as_str()) {
            bail!("function id {:?} is declared twice", entry.id);
        }
        if !config.projects.is_empty() && !config.projects.iter().any(|p| p.id == entry.project) {
            bail!("function {:?}: no project with id {}", entry.id, entry.project);
        }
        out.push(compile_one(entry, base)?);
    }
    Ok(out)
}

/// The function's Hog source and where it came from (for diagnostics).
fn source_of(entry: &FunctionEntry, base: &Path) -> Result<(String, String)> {
    Ok(match (&entry.template, &entry.file, &entry.hog) {
        (Some(id), None, None) => {
            if entry.kind != FunctionType::Destination {
                bail!("function {:?}: `template` is for destinations", entry.id);
            }
            let template = hogpipe_destinations::template::template(id).ok_or_else(|| {
                anyhow::anyhow!(
                    "function {:?}: no destination template {id:?} (see `hogpipe destinations list`)",
                    entry.id
                )
            })?;
            (template.code.clone(), format!("{id}.hog"))
        }
        (None, Some(file), None) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("function {:?}: cannot read {}", entry.id, path.display()))?;
            (text, path.display().to_string())
        }
        (None, None, Some(hog)) => (hog.clone(), format!("function {}", entry.id)),
        _ => bail!("function {:?}: give exactly one of `template`, `file` or `hog`", entry.id),
    })
}

/// The enabled destinations of the config, compiled with their inputs for the invoker: made
/// from a template (inputs checked against its schema) or from Hog (every string input may be a
/// template such as `'{event.properties.email}'`).
pub fn destinations(config: &Config, base: &Path) -> Result<Vec<Destination>> {
    let mut out = Vec::new();
    for entry in config.functions.iter().filter(|f| f.kind == FunctionType::Destination) {
        let name = entry.name.clone().unwrap_or_else(|| entry.id.clone());
        let destination = match &entry.template {
            Some(id) => {
                let template = hogpipe_destinations::template::template(id)
                    .ok_or_else(|| anyhow::anyhow!("function {:?}: no destination template {id:?}", entry.id))?;
                Destination::from_template(&entry.id, entry.project, &name, template, &entry.inputs)
            }
            None => {
                let (source, origin) = source_of(entry, base)?;
                let code = compile(&source, &CompileOptions::default()).map_err(|d| {
                    anyhow::anyhow!("function {:?} does not compile:\n{}", entry.id, d.render(&source, &origin))
                })?;
                Destination::from_bytecode(&entry.id, entry.project, &name, &code.to_json(), None, &entry.inputs)
            }
        };
        out.push(destination.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    Ok(out)
}

fn compile_one(entry: &FunctionEntry, base: &Path) -> Result<FunctionSpec> {
    let (source, origin) = source_of(entry, base)?;
    let code = compile(&source, &CompileOptions::default())
        .map_err(|d| anyhow::anyhow!("function {:?} does not compile:\n{}", entry.id, d.render(&source, &origin)))?;
    let filter = match &entry.filter {
        Some(expr) => {
            let program = format!("return ({expr})");
            let options = CompileOptions { globals: None, ..Default::default() };
            let code = compile(&program, &options).map_err(|d| {
                anyhow::anyhow!(
                    "function {:?}: the filter does not compile:\n{}",
                    entry.id,
                    d.render(&program, "filter")
                )
            })?;
            Some(code.to_json())
        }
        None => None,
    };
    Ok(FunctionSpec {
        id: entry.id.clone(),
        project_id: entry.project,
        name: entry.name.clone().unwrap_or_else(|| entry.id.clone()),
        kind: match entry.kind {
            FunctionType::Transformation => FunctionKind::Transformation,
            FunctionType::Destination => FunctionKind::Destination,
        },
        enabled: entry.enabled,
        order: entry.order,
        bytecode: code.to_json(),
        filter,
        inputs: entry.inputs.clone(),
    })
}
