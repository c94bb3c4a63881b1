//! `hogpipe destinations list|show` as a user runs them.

use std::process::Command;

fn hogpipe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hogpipe")).args(args).output().expect("run hogpipe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_prints_one_template_per_line() {
    let (code, stdout, stderr) = hogpipe(&["destinations", "list"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 8, "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("template-webhook ") && l.contains("HTTP Webhook")), "{stdout}");
    assert!(lines.iter().all(|l| l.starts_with("template-")), "{stdout}");
}

#[test]
fn show_prints_a_template_and_unknown_ids_exit_1() {
    let (code, stdout, stderr) = hogpipe(&["destinations", "show", "template-discord"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("template-discord: Discord\n"), "{stdout}");
    assert!(stdout.contains("webhookUrl"), "{stdout}");
    assert!(stdout.contains("fetch(inputs.webhookUrl"), "{stdout}");

    let (code, stdout, stderr) = hogpipe(&["destinations", "show", "discord"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("did you mean `template-discord`?"), "{stderr}");
}
