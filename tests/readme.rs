//! The README's quick start compiles as a user pastes it: its first `rust` block is, to the
//! byte, `examples/quick_start.rs`, which `cargo test` builds.

#[test]
fn the_quick_start_is_the_example_that_cargo_builds() {
    let readme = include_str!("../README.md");
    let start = readme.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let length = readme[start..].find("```").expect("the block's end");
    assert_eq!(
        &readme[start..start + length],
        include_str!("../examples/quick_start.rs"),
        "the README's quick start and examples/quick_start.rs differ"
    );
}
