//! Misuse of `#[crash_guarded]` is a compile error pointing at the right place; the `.stderr`
//! files beside each case are what a user reads.

#[test]
fn misuse_is_a_compile_error_with_the_right_span() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
