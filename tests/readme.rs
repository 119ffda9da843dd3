//! The README's quick start compiles as a user pastes it: its first `rust` block is, to the
//! byte, `examples/quick_start.rs`, which `cargo test` builds. (Every `rust` block of the README
//! is also a doc test of the crate.)

#[test]
fn the_quick_start_is_the_example_that_cargo_builds() {
    let readme = include_str!("../README.md");
    // The fence may carry doc-test attributes: "```rust,no_run".
    let fence = readme.find("```rust").expect("a rust block");
    let start = fence + readme[fence..].find('\n').expect("the fence's end") + 1;
    let length = readme[start..].find("```").expect("the block's end");
    assert_eq!(
        &readme[start..start + length],
        include_str!("../examples/quick_start.rs"),
        "the README's quick start and examples/quick_start.rs differ"
    );
}
