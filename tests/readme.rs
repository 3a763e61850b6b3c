//! The README's Rust examples are complete programs a user can paste (a `main`, no rustdoc
//! hidden lines), and `cargo test --doc` compiles and runs them with warnings denied (through
//! the `#[cfg(doctest)]` item in src/lib.rs that includes README.md).

const README: &str = include_str!("../README.md");
const LIB: &str = include_str!("../src/lib.rs");

/// The README's fenced code blocks: (language, first line number, body).
fn blocks() -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in README.lines().enumerate() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_owned(), i + 1, String::new())),
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in README.md");
    out
}

/// Blocks rustdoc compiles as Rust: no language, `rust`, or only rustdoc attributes.
fn is_rust(lang: &str) -> bool {
    lang.split(',').map(str::trim).all(|t| {
        matches!(
            t,
            "" | "rust" | "should_panic" | "no_run" | "ignore" | "compile_fail" | "edition2021"
        )
    })
}

#[test]
fn every_rust_block_of_the_readme_is_a_complete_program() {
    let rust: Vec<_> = blocks()
        .into_iter()
        .filter(|(lang, _, _)| is_rust(lang))
        .collect();
    assert!(rust.len() >= 4, "README.md has {} Rust blocks", rust.len());
    for (lang, line, body) in &rust {
        assert!(
            body.contains("fn main()"),
            "README.md:{line}: a Rust block without `fn main()`"
        );
        assert!(
            !body
                .lines()
                .any(|l| l.trim_start() == "#" || l.trim_start().starts_with("# ")),
            "README.md:{line}: a rustdoc hidden line (`# ...`): not what a user pastes"
        );
        assert!(
            !lang.contains("ignore") && !lang.contains("no_run"),
            "README.md:{line}: `{lang}`: every example runs"
        );
    }
}

#[test]
fn the_readme_is_a_doc_test_with_warnings_denied() {
    assert!(
        LIB.contains("#[cfg(doctest)]\n#[doc = include_str!(\"../README.md\")]"),
        "src/lib.rs no longer includes README.md as a doc test"
    );
    assert!(
        LIB.contains("#![doc(test(attr(deny(warnings))))]"),
        "doc tests no longer deny warnings"
    );
}
