//! Every destination template: it loads (parses, compiles, ids unique and matching file names,
//! templated defaults compile).

use hogpipe_destinations::template::{listed_ids, load_all, templates};

#[test]
fn templates_all_load() {
    let mut failures = Vec::new();
    for result in load_all() {
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "templates that do not load:\n{}", failures.join("\n"));
    assert_eq!(templates().len(), listed_ids().count());
}
