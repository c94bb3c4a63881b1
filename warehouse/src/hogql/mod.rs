//! HogQL: the SQL the query API takes, translated to ClickHouse SQL that can only see the
//! caller's team.
//!
//! [`translate`] lexes ([`lexer`]), parses a SELECT subset ([`parser`] into [`ast`]) and prints
//! ClickHouse SQL from the tree ([`printer`]); nothing of the input is spliced as text. Isolation
//! is by construction: the only tables are `events`, `persons`, `person_distinct_ids` and
//! `live_aggregates`, each printed as a subquery filtered to `Context::team_id`; qualified names
//! (`system.tables`), table functions, functions off the [`functions`] allowlist, `SETTINGS`,
//! `FORMAT`, writes and multiple statements are errors with a position. The outermost query gets
//! a row cap and ends with the only `SETTINGS` of the statement (`max_execution_time`).
//!
//! `properties.$browser` reads a property the way PostHog does: the JSON value as text, string
//! quotes removed, NULL when the key is missing or JSON `null`. On ClickHouse 20+ that is
//! `JSONExtractRaw` with the whole key path; on 18.16 (no `JSONExtract*`) nested keys are read step
//! by step with `visitParamExtractRaw`, which finds a key by name anywhere inside the value of
//! the previous step (exact for the usual one level and for unambiguous nested keys).

pub mod ast;
pub mod functions;
pub mod lexer;
pub mod parser;
pub mod printer;

use crate::schema::Dialect;

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 100_000;

/// Longest SQL printed (CTEs are inlined, so a small query could otherwise grow without bound).
pub const MAX_SQL_BYTES: usize = 1_000_000;

/// Who is asking and the limits that apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The caller's team: the only rows any table reference can see.
    pub team_id: u64,
    /// The warehouse's SQL dialect.
    pub dialect: Dialect,
    /// The outermost query's LIMIT when it has none.
    pub default_limit: u64,
    /// The most rows the outermost query may return (any LIMIT is capped to it).
    pub max_limit: u64,
    /// `SETTINGS max_execution_time` of the statement.
    pub max_execution_time_secs: u64,
    /// Read `events` with `FINAL` (exact, deduplicated answers; slower on big tables).
    pub final_events: bool,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            team_id: 0,
            dialect: Dialect::Modern,
            default_limit: 100,
            max_limit: 10_000,
            max_execution_time_secs: 30,
            final_events: true,
        }
    }
}

/// Why a query was refused, and where (1-based line and column of the offending token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct HogQlError {
    /// What is wrong.
    pub message: String,
    /// Line.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

/// Stack of the thread a translation runs on: parsing and printing recurse once per nesting
/// level (bounded by [`parser::MAX_DEPTH`]), and unoptimised builds use tens of KB per level, more
/// than a server's worker thread may have.
const STACK_BYTES: usize = 16 * 1024 * 1024;

/// Translates a HogQL query to ClickHouse SQL for `ctx.team_id` (without `FORMAT`).
///
/// Runs on a short-lived thread with a known stack (see [`STACK_BYTES`]), so it is safe to call
/// from any thread, an async runtime's included.
pub fn translate(hogql: &str, ctx: &Context) -> Result<String, HogQlError> {
    let internal = |what: String| HogQlError { message: what, line: 1, column: 1 };
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("hogql".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, || translate_here(hogql, ctx))
            .map_err(|e| internal(format!("cannot start the HogQL translator: {e}")))?
            .join()
            .map_err(|_| internal("the HogQL translator failed on this query".into()))?
    })
}

fn translate_here(hogql: &str, ctx: &Context) -> Result<String, HogQlError> {
    if hogql.len() > MAX_QUERY_BYTES {
        return Err(HogQlError {
            message: format!("the query is too long: {} bytes, at most {MAX_QUERY_BYTES}", hogql.len()),
            line: 1,
            column: 1,
        });
    }
    let query = parser::parse(hogql)?;
    printer::print(&query, ctx)
}

#[cfg(test)]
mod tests;
