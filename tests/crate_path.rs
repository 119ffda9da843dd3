//! `crate = "path"` re-points the generated code at crashguard re-exported under another path.

mod platform {
    pub mod errors {
        pub use crashguard as guard;
    }
}

// No `crashguard` in scope under that name: only the re-export reaches it.
use platform::errors::guard as cg;

fn zero(_: &cg::PanicReport) -> u32 {
    0
}

#[cg::crash_guarded(crate = "platform::errors::guard", fallback = zero)]
fn parse(text: &str) -> u32 {
    text.parse().unwrap()
}

#[test]
fn generated_code_finds_crashguard_through_the_given_path() {
    assert_eq!(parse("41"), 41);
    assert_eq!(parse("forty-one"), 0);
}
