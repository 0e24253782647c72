//! Routing conformance, parse side: every `kind: parse` case in
//! `tests/routing/` compiled with the case's platform; the number of rules
//! kept and the diagnostics must match.

use helix_config::{ProjectFiles, ROOT_CONFIG_FILES, compile};
use helix_core::routes::{DiagnosticKind, Platform};
use helix_testkit::cases;

#[test]
fn parse_cases() {
    let (mut ran, mut failures) = (0, Vec::new());
    for case in cases::load_all().into_iter().filter(|c| c.kind == "parse") {
        if let Some(reason) = &case.skip {
            eprintln!("skipped {}: {reason}", case.id);
            continue;
        }
        ran += 1;
        let mut files = ProjectFiles::default();
        for name in ROOT_CONFIG_FILES {
            if let Some(c) = case.root_file(name) {
                files.root.insert((*name).to_owned(), c.as_bytes().to_vec());
            }
        }
        for (path, content) in case.published() {
            files.publish.insert(path.trim_start_matches('/').to_owned(), content.as_bytes().to_vec());
        }
        let compat = Platform::parse(&case.compat).unwrap_or_else(|| panic!("{}: compat {:?}", case.id, case.compat));
        let mut compiled = compile(&files, Some(compat));
        // Schedules count as kept rules, and their problems as diagnostics.
        let sources =
            helix_config::functions::FunctionSources { files: case.function_sources().collect(), ..Default::default() }
                .with_config(&files.root, "production", None);
        let functions = helix_config::functions::compile(&sources).unwrap_or_default();
        let (crons, cron_diagnostics) = helix_config::functions::crons(&sources, &functions);
        compiled.diagnostics.extend(cron_diagnostics);
        let only_headers = files.publish.contains_key("_headers") && !files.publish.contains_key("_redirects");
        // What the platform keeps: the rules HelixStack kept, plus those it
        // left out only because it cannot honor them yet (each reported).
        let not_honored = compiled.diagnostics.iter().filter(|d| d.kind == DiagnosticKind::NotHonored).count();
        let kept = not_honored
            + crons.len()
            + if only_headers { compiled.table.headers.len() } else { compiled.table.redirects.len() };
        let mut problems = Vec::new();
        if let Some(want) = case.expect.parsed_count
            && kept != want
        {
            problems.push(format!("{kept} rules kept (want {want}): {:?}", compiled.table));
        }
        for pattern in &case.expect.errors {
            let re = regex::Regex::new(pattern).expect("valid regex in case");
            if !compiled.diagnostics.iter().any(|d| re.is_match(&d.message)) {
                problems.push(format!("no diagnostic matches {pattern:?}; got {:?}", compiled.diagnostics));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n    {}", case.id, problems.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "{} of {ran} parse cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(ran >= 8, "only {ran} parse cases ran");
}
