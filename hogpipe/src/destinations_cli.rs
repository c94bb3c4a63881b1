//! `hogpipe destinations …`: the destination templates the binary carries.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use hog_lang::diagnostics::did_you_mean;
use hogpipe_destinations::template::{templates, Template};

#[derive(Subcommand)]
pub enum DestinationsCommand {
    /// List the destination templates: id, name and categories, one per line.
    List,
    /// Show one template: its description, inputs and code.
    Show {
        /// The template's id (`template-slack`).
        id: String,
    },
    /// Deliveries that exhausted their retries: list, show, replay, discard.
    DeadLetters(crate::dead_letters_cli::DeadLettersArgs),
}

pub fn run(cmd: DestinationsCommand) -> ExitCode {
    let text = match cmd {
        DestinationsCommand::DeadLetters(args) => return crate::dead_letters_cli::run(args),
        DestinationsCommand::List => list_text(templates()),
        DestinationsCommand::Show { id } => match templates().iter().find(|t| t.id == id) {
            Some(t) => show_text(t),
            None => {
                eprintln!("error: {}", unknown_text(&id, templates()));
                return ExitCode::from(1);
            }
        },
    };
    // A reader that goes away (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// One line per template: id, name and categories in aligned columns.
fn list_text(templates: &[Template]) -> String {
    let id_width = templates.iter().map(|t| t.id.chars().count()).max().unwrap_or(0);
    let name_width = templates.iter().map(|t| t.name.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for t in templates {
        let line = format!("{:id_width$}  {:name_width$}  {}", t.id, t.name, t.category.join(", "));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A table of rows, each column as wide as its widest cell; a row's note goes on the next line,
/// under the second column.
fn table(rows: &[(Vec<String>, Option<String>)]) -> String {
    let columns = rows.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|(r, _)| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (row, note) in rows {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            line.push_str(&format!("{cell:width$}  ", width = widths[c]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if let Some(note) = note {
            out.push_str(&format!("  {:width$}  {note}\n", "", width = widths.first().copied().unwrap_or(0)));
        }
    }
    out
}

/// Everything about one template.
fn show_text(t: &Template) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut out = format!("{}: {}\n{}\n\n", t.id, t.name, t.description);
    out.push_str(&format!(
        "type: {}    status: {}    category: {}\n\n",
        t.kind.as_str(),
        serde_json::to_value(t.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        t.category.join(", ")
    ));
    out.push_str("inputs:\n");
    let mut rows = vec![(["key", "type", "required", "secret", "default", "label"].map(String::from).to_vec(), None)];
    for i in &t.inputs_schema {
        let default = match &i.default {
            None => "-".to_string(),
            Some(serde_json::Value::String(s)) => clip(&format!("{s:?}"), 40),
            Some(v) => clip(&v.to_string(), 40),
        };
        let note = i.choices.as_ref().map(|choices| {
            let values: Vec<String> = choices.iter().map(|c| c.value.to_string()).collect();
            format!("choices: {}", values.join(", "))
        });
        let row = vec![
            i.key.clone(),
            i.kind.as_str().to_string(),
            yes_no(i.required),
            yes_no(i.secret),
            default,
            i.label.clone(),
        ];
        rows.push((row, note));
    }
    out.push_str(&table(&rows));
    out.push_str(&format!("\ncode (destinations/templates/{}.hog):\n", t.id));
    for line in t.code.lines() {
        out.push_str(if line.is_empty() { "" } else { "  " });
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The error for an id no template has, with the closest ids.
fn unknown_text(id: &str, templates: &[Template]) -> String {
    let ids: Vec<&str> = templates.iter().map(|t| t.id.as_str()).collect();
    let prefixed = format!("template-{id}");
    let hint = if ids.contains(&prefixed.as_str()) {
        Some(prefixed.as_str())
    } else {
        did_you_mean(id, ids.iter().copied()).or_else(|| did_you_mean(&prefixed, ids.iter().copied()))
    };
    match hint {
        Some(h) => {
            format!("no destination template `{id}`; did you mean `{h}`? (`hogpipe destinations list` shows them all)")
        }
        None => format!("no destination template `{id}` (`hogpipe destinations list` shows them all)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(id: &str) -> &'static Template {
        templates().iter().find(|t| t.id == id).expect("a listed template")
    }

    #[test]
    fn list_has_one_aligned_line_per_template() {
        let text = list_text(templates());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), templates().len());
        let slack = lines.iter().find(|l| l.starts_with("template-slack ")).expect("slack is listed");
        assert!(slack.ends_with("Slack") || slack.contains("  Slack  "), "{slack}");
        assert!(slack.ends_with("Customer Success"), "{slack}");
        // Names start in the same column on every line.
        let width = templates().iter().map(|t| t.id.len()).max().unwrap_or(0) + 2;
        for (line, t) in lines.iter().zip(templates()) {
            assert_eq!(line.get(width..width + t.name.len()), Some(t.name.as_str()), "{line}");
        }
    }

    #[test]
    fn show_has_description_inputs_and_code() {
        let text = show_text(find("template-webhook"));
        assert!(text.starts_with("template-webhook: HTTP Webhook\nSends each event"), "{text}");
        assert!(text.contains("type: destination    status: stable    category: Custom"), "{text}");
        let url_row = text.lines().find(|l| l.trim_start().starts_with("url ")).expect("the url input");
        assert!(url_row.contains("string") && url_row.contains("yes") && url_row.ends_with("Webhook URL"), "{url_row}");
        assert!(text.contains(r#"choices: "POST", "PUT", "PATCH", "GET", "DELETE""#), "{text}");
        assert!(text.contains("  let res := fetch(inputs.url, {"), "{text}");
    }

    #[test]
    fn unknown_ids_get_a_suggestion() {
        assert_eq!(
            unknown_text("slack", templates()),
            "no destination template `slack`; did you mean `template-slack`? (`hogpipe destinations list` shows them all)"
        );
        assert!(unknown_text("template-slak", templates()).contains("did you mean `template-slack`?"));
        assert_eq!(
            unknown_text("zzzzzzzzzzzz", templates()),
            "no destination template `zzzzzzzzzzzz` (`hogpipe destinations list` shows them all)"
        );
    }
}
