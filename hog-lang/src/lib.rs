//! # hog-lang
//!
//! The Hog language as hogpipe speaks it: PostHog-compatible source (`hog.pest`), an AST with
//! spans, diagnostics, a compiler to PostHog's HogVM bytecode (format version 1), and the VM that
//! runs it (the semantic reference for every faster tier), with the standard library.
//!
//! It does not own where functions come from or what their globals are; the pipeline does.
//!
//! ```
//! use hog_lang::{run_source, CompileOptions};
//! let out = run_source("print(f'{1 + 2} apples')", &CompileOptions::default()).unwrap();
//! assert_eq!(out.lines, vec!["3 apples"]);
//! ```
#![warn(missing_docs)]

pub mod ast;
pub mod bench;
pub mod bytecode;
pub mod compiler;
pub mod diagnostics;
pub mod dict;
pub mod memory;
pub mod optimize;
pub mod parser;
pub mod stdlib;
pub mod text;
pub mod value;
pub mod vm;

pub use bytecode::{Chunk, DecodeError};
pub use compiler::{compile, CompileOptions};
pub use diagnostics::{Diagnostic, Diagnostics};
pub use value::Value;
pub use vm::{CollectingHost, Host, Outcome, Vm, VmError};

use std::rc::Rc;

/// Why running source failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It did not compile.
    #[error("{0}")]
    Compile(Diagnostics),
    /// The bytecode was invalid.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// It failed while running.
    #[error("{0}")]
    Runtime(#[from] Box<VmError>),
    /// It called an async function and no host performed it.
    #[error("async function `{0}` needs a host to perform it")]
    Suspended(String),
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The program's result.
    pub result: Value,
    /// Printed lines.
    pub lines: Vec<String>,
}

/// Compiles source into a runnable chunk (with source positions for errors).
pub fn compile_chunk(source: &str, options: &CompileOptions) -> Result<Rc<Chunk>, RunError> {
    let code = compile(source, options).map_err(RunError::Compile)?;
    let chunk = bytecode::decode("root", bytecode::VERSION, &code.items, Some(&code.spans), Some(Rc::from(source)))?;
    Ok(Rc::new(chunk))
}

/// Compiles and runs source with no globals, collecting printed lines.
pub fn run_source(source: &str, options: &CompileOptions) -> Result<RunOutput, RunError> {
    let chunk = compile_chunk(source, options)?;
    run_chunk(chunk, Value::Null)
}

/// Runs a chunk with the given globals, collecting printed lines.
pub fn run_chunk(chunk: Rc<Chunk>, globals: Value) -> Result<RunOutput, RunError> {
    let mut host = CollectingHost::default();
    let mut vm = Vm::new(globals);
    match vm.run(chunk, &mut host)? {
        Outcome::Finished(result) => Ok(RunOutput { result, lines: host.lines }),
        Outcome::Suspended { name, .. } => Err(RunError::Suspended(name.to_string())),
    }
}
