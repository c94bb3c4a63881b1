//! Compile diagnostics, snapshot-tested as users see them (code, line:column, caret, help).

use hog_lang::{compile, CompileOptions};

fn render(source: &str) -> String {
    match compile(source, &CompileOptions::default()) {
        Ok(_) => panic!("expected a compile error for:\n{source}"),
        Err(d) => d.render(source, "test.hog"),
    }
}

#[test]
fn unterminated_string() {
    insta::assert_snapshot!(render("let a := 1\nprint('hello)\n"));
}

#[test]
fn unknown_function() {
    insta::assert_snapshot!(render("let items := [1, 2]\nprint(lenght(items))\n"));
}

#[test]
fn unknown_variable() {
    insta::assert_snapshot!(render("let count := 1\nprint(cuont + 1)\n"));
}

#[test]
fn wrong_arity_stdlib() {
    insta::assert_snapshot!(render("print(length('a', 'b'))\n"));
}

#[test]
fn wrong_arity_local_function() {
    insta::assert_snapshot!(render("fun add(a, b) { return a + b }\nprint(add(1, 2, 3))\n"));
}

#[test]
fn let_without_name() {
    insta::assert_snapshot!(render("let := 5\n"));
}

#[test]
fn let_with_reserved_word() {
    insta::assert_snapshot!(render("let if := 5\n"));
}

#[test]
fn unbalanced_braces() {
    insta::assert_snapshot!(render("fun f() {\n  if (true) {\n    print(1)\n}\n"));
}

#[test]
fn stray_closing_brace() {
    insta::assert_snapshot!(render("print(1)\n}\n"));
}

#[test]
fn mismatched_bracket() {
    insta::assert_snapshot!(render("let a := [1, 2)\n"));
}

#[test]
fn assignment_with_equals() {
    insta::assert_snapshot!(render("let a := 1\na = = 2\n"));
}

#[test]
fn assign_to_undeclared() {
    insta::assert_snapshot!(render("total := 5\n"));
}

#[test]
fn duplicate_variable() {
    insta::assert_snapshot!(render("let a := 1\nlet a := 2\n"));
}

#[test]
fn zero_index() {
    insta::assert_snapshot!(render("let a := [1]\nprint(a[0])\n"));
}

#[test]
fn unterminated_comment() {
    insta::assert_snapshot!(render("print(1) /* never closed\n"));
}

#[test]
fn double_quoted_string() {
    insta::assert_snapshot!(render("print(\"hello\")\n"));
}

#[test]
fn json_form_has_line_and_column() {
    let source = "let a := 1\nprint(lenght(a))\n";
    let d = compile(source, &CompileOptions::default()).expect_err("unknown function");
    let json = d.to_json(source);
    assert_eq!(json[0]["line"], 2);
    assert_eq!(json[0]["column"], 7);
    assert_eq!(json[0]["code"], "E0003");
    assert!(json[0]["message"].as_str().unwrap_or_default().contains("lenght"));
}

#[test]
fn several_errors_are_all_reported() {
    let source = "print(foo(1))\nprint(bar)\n";
    let d = compile(source, &CompileOptions::default()).expect_err("two errors");
    assert_eq!(d.0.len(), 2, "{d}");
}
