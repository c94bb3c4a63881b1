//! `hogpipe hog …`: run, compile and explore Hog programs.

use clap::Subcommand;
use hog_lang::bytecode::{self, decode_json_text};
use hog_lang::compiler::{Compiler, FUNCTION_GLOBALS};
use hog_lang::{compile, CompileOptions, Host, Outcome, Value, Vm};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

#[derive(Subcommand)]
pub enum HogCommand {
    /// Run a `.hog` source file or a `.hoge` bytecode file (a JSON array); prints what it prints.
    Run {
        /// The program.
        file: PathBuf,
        /// A JSON file with the globals the program sees (`{"event": {...}}`).
        #[arg(long)]
        globals: Option<PathBuf>,
        /// Print the program's return value after it finishes.
        #[arg(long)]
        print_result: bool,
        /// When the program calls an async function other than `sleep` (`fetch`,
        /// `postHogCapture`, …), save the suspended VM here (JSON) and exit with code 3, for
        /// `hogpipe hog resume` to continue, in this or another process.
        #[arg(long)]
        state_out: Option<PathBuf>,
    },
    /// Continue a program saved by `run --state-out`, giving the async call's result.
    Resume {
        /// The saved state.
        state: PathBuf,
        /// The async call's result as JSON (e.g. `{"status": 200, "body": {}}`).
        #[arg(long, default_value = "null")]
        result: String,
        /// Print the program's return value after it finishes.
        #[arg(long)]
        print_result: bool,
        /// Where to save the state if it suspends again (default: overwrite STATE).
        #[arg(long)]
        state_out: Option<PathBuf>,
    },
    /// Compile a `.hog` file and print its bytecode as JSON.
    Compile {
        /// The program.
        file: PathBuf,
        /// Write the bytecode here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// An interactive session: variables persist between lines; expression values are printed.
    Repl,
    /// List the standard library with signatures.
    Functions,
}

struct StdoutHost;

impl Host for StdoutHost {
    fn print(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
    fn overrides_stdlib(&self) -> bool {
        false
    }
}

pub fn run(cmd: HogCommand) -> ExitCode {
    match cmd {
        HogCommand::Run { file, globals, print_result, state_out } => {
            run_file(&file, globals.as_deref(), print_result, state_out.as_deref())
        }
        HogCommand::Resume { state, result, print_result, state_out } => {
            resume_file(&state, &result, print_result, state_out.as_deref().unwrap_or(&state))
        }
        HogCommand::Compile { file, output } => compile_file(&file, output.as_deref()),
        HogCommand::Repl => repl(),
        HogCommand::Functions => {
            let examples: std::collections::HashMap<_, _> = hog_lang::stdlib::examples_all().into_iter().collect();
            let mut out = std::io::stdout().lock();
            for (name, signature, description) in hog_lang::stdlib::describe_all() {
                // Stop quietly when the reader goes away (`hogpipe hog functions | head`).
                if writeln!(out, "{signature}\n    {description}").is_err() {
                    return ExitCode::SUCCESS;
                }
                for (expr, result) in examples.get(name).copied().unwrap_or_default() {
                    if writeln!(out, "    {expr}  →  {result}").is_err() {
                        return ExitCode::SUCCESS;
                    }
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn read(path: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(2)
    })
}

fn options_for(globals: &Value) -> CompileOptions {
    let mut names: Vec<String> = FUNCTION_GLOBALS.iter().map(|s| s.to_string()).collect();
    if let Value::Dict(d) = globals {
        for k in d.borrow().keys() {
            if let Some(s) = k.to_value().as_str() {
                names.push(s.to_string());
            }
        }
    }
    CompileOptions { globals: Some(names), functions: Vec::new() }
}

fn load_globals(path: Option<&Path>) -> Result<Value, ExitCode> {
    let Some(path) = path else {
        return Ok(Value::Null);
    };
    let text = read(path)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        eprintln!("error: {}: invalid JSON at line {}, column {}: {e}", path.display(), e.line(), e.column());
        ExitCode::from(2)
    })?;
    if !json.is_object() {
        eprintln!("error: {}: globals must be a JSON object", path.display());
        return Err(ExitCode::from(2));
    }
    Ok(hog_lang::value::from_json(&json))
}

fn run_file(path: &Path, globals: Option<&Path>, print_result: bool, state_out: Option<&Path>) -> ExitCode {
    let globals = match load_globals(globals) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let source = match read(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let filename = path.display().to_string();
    let chunk = if path.extension().is_some_and(|e| e == "hoge") {
        match decode_json_text(&source) {
            Ok(c) => Rc::new(c),
            Err(e) => {
                eprintln!("error: {filename}: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let options = options_for(&globals);
        let code = match compile(&source, &options) {
            Ok(c) => c,
            Err(d) => {
                eprint!("{}", d.render(&source, &filename));
                return ExitCode::from(1);
            }
        };
        match bytecode::decode(
            "root",
            bytecode::VERSION,
            &code.items,
            Some(&code.spans),
            Some(Rc::from(source.as_str())),
        ) {
            Ok(c) => Rc::new(c),
            Err(e) => {
                eprintln!("error: {filename}: internal compiler error: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let mut vm = Vm::new(globals);
    let outcome = vm.run(chunk, &mut StdoutHost);
    drive(vm, outcome, &filename, print_result, state_out)
}

/// Runs a VM to the end, performing `sleep`; other async calls save the state (when asked to)
/// and exit with code 3.
fn drive(
    mut vm: Vm,
    mut outcome: Result<Outcome, Box<hog_lang::VmError>>,
    filename: &str,
    print_result: bool,
    state_out: Option<&Path>,
) -> ExitCode {
    let mut host = StdoutHost;
    loop {
        match outcome {
            Ok(Outcome::Finished(v)) => {
                if print_result {
                    println!("{}", v.repr());
                }
                return ExitCode::SUCCESS;
            }
            Ok(Outcome::Suspended { name, args }) => {
                let result = match (&*name, state_out) {
                    ("sleep", _) => {
                        let secs = args.first().map(|v| v.to_number()).unwrap_or(0.0);
                        if secs.is_finite() && secs > 0.0 {
                            std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(60.0)));
                        }
                        Value::Null
                    }
                    (other, Some(out)) => {
                        let args: Vec<String> = args.iter().map(Value::repr).collect();
                        let saved = serde_json::json!({
                            "call": { "name": other, "args": args },
                            "state": serde_json::from_str::<serde_json::Value>(&vm.save().to_json()).unwrap_or_default(),
                        });
                        if let Err(e) = std::fs::write(out, saved.to_string()) {
                            eprintln!("error: cannot write {}: {e}", out.display());
                            return ExitCode::from(2);
                        }
                        let _ = std::io::stdout().flush();
                        eprintln!(
                            "suspended on {other}({}); state saved to {}; continue with `hogpipe hog resume {} --result JSON`",
                            args.join(", "),
                            out.display(),
                            out.display()
                        );
                        return ExitCode::from(3);
                    }
                    (other, None) => {
                        eprintln!(
                            "error: {filename}: `{other}` is not available in `hogpipe hog run` (use --state-out to save the suspended program and `hogpipe hog resume` with the result)"
                        );
                        return ExitCode::from(1);
                    }
                };
                outcome = vm.resume(result, &mut host);
            }
            Err(e) => {
                let _ = std::io::stdout().flush();
                eprintln!("error: {filename}: {e}");
                return ExitCode::from(1);
            }
        }
    }
}

fn resume_file(path: &Path, result: &str, print_result: bool, state_out: &Path) -> ExitCode {
    let text = match read(path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let filename = path.display().to_string();
    let saved: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {filename}: invalid JSON at line {}, column {}: {e}", e.line(), e.column());
            return ExitCode::from(2);
        }
    };
    let state = match serde_json::from_value::<hog_lang::vm::VmState>(saved["state"].clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {filename}: field `state` is not a saved VM state: {e}");
            return ExitCode::from(2);
        }
    };
    let result: serde_json::Value = match serde_json::from_str(result) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: --result: invalid JSON at column {}: {e}", e.column());
            return ExitCode::from(2);
        }
    };
    let mut vm = match Vm::restore(&state) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("error: {filename}: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = vm.resume(hog_lang::value::from_json(&result), &mut StdoutHost);
    drive(vm, outcome, &filename, print_result, Some(state_out))
}

fn compile_file(path: &Path, output: Option<&Path>) -> ExitCode {
    let source = match read(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = match compile(&source, &CompileOptions::default()) {
        Ok(c) => c,
        Err(d) => {
            eprint!("{}", d.render(&source, &path.display().to_string()));
            return ExitCode::from(1);
        }
    };
    let json = code.to_json().to_string();
    match output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, json + "\n") {
                eprintln!("error: cannot write {}: {e}", out.display());
                return ExitCode::from(2);
            }
        }
        None => println!("{json}"),
    }
    ExitCode::SUCCESS
}

fn repl() -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let mut compiler = Compiler::new_repl(CompileOptions::default());
    let mut vm = Vm::new(Value::Null);
    let mut host = StdoutHost;
    let stdin = std::io::stdin();
    let mut buffer = String::new();
    if interactive {
        println!("Hog REPL. Variables persist between lines; end a line with \\ to continue it. Ctrl-D exits.");
    }
    loop {
        if interactive {
            print!("{}", if buffer.is_empty() { "hog> " } else { "...> " });
            let _ = std::io::stdout().flush();
        }
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if let Some(cont) = trimmed.strip_suffix('\\') {
            buffer.push_str(cont);
            buffer.push('\n');
            continue;
        }
        buffer.push_str(trimmed);
        let source = std::mem::take(&mut buffer);
        if source.trim().is_empty() {
            continue;
        }
        let before = compiler.top_level_count();
        let (code, leaves_value) = match compiler.compile_repl(&source) {
            Ok(x) => x,
            Err(d) => {
                eprint!("{}", d.render(&source, "<repl>"));
                continue;
            }
        };
        let chunk = match bytecode::decode("root", 1, &code.items, Some(&code.spans), Some(Rc::from(source.as_str()))) {
            Ok(c) => Rc::new(c),
            Err(e) => {
                eprintln!("error: internal compiler error: {e}");
                compiler.truncate_top_level(before);
                continue;
            }
        };
        match vm.run_repl(chunk, &mut host) {
            Ok(Outcome::Finished(_)) => {
                if leaves_value {
                    let v = vm.pop_repl_value();
                    if !v.is_null() {
                        println!("{}", v.repr());
                    }
                }
            }
            Ok(Outcome::Suspended { name, .. }) => {
                eprintln!("error: `{name}` is not available in the REPL");
                compiler.truncate_top_level(before);
            }
            Err(e) => {
                eprintln!("error: {e}");
                compiler.truncate_top_level(before);
            }
        }
    }
    ExitCode::SUCCESS
}
