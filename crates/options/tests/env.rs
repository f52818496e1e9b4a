//! `Options::from_env` reads the real environment (its own process: nothing
//! else here touches the environment while it runs).

use hakmem_options::{Issue, Mode, Options, Var};

#[test]
fn from_env_reads_the_process_environment() {
    // whatever the caller's environment holds
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HAKMEM_") {
            std::env::remove_var(name);
        }
    }
    std::env::set_var("HAKMEM_MODE", "learning");
    std::env::set_var("HAKMEM_LEARN_WINDOW_MS", "200");
    std::env::set_var("HAKMEM_POLICY", "/tmp/learned.policy");
    std::env::set_var("HAKMEM_STATS", "x");
    std::env::set_var("HAKMEM_TYPO", "1");
    std::env::set_var("HAKMEM_BENCH_SNMALLOC", "/opt/sn.so");
    // SAFETY: this test binary has one test, so no other thread changes
    // the environment while it is read.
    let (o, w) = unsafe { Options::from_env() };
    assert_eq!(o.mode, Mode::Learning);
    assert_eq!(o.learn_window_ms, 200);
    assert_eq!(o.policy.unwrap().as_bytes(), b"/tmp/learned.policy");
    assert!(!o.stats);
    let got: Vec<_> = w.iter().map(|w| (w.var(), w.issue())).collect();
    assert_eq!(
        got,
        [(Some(Var::Stats), Issue::NotBool), (None, Issue::Unknown)]
    );
    assert_eq!(
        w.iter().nth(1).unwrap().to_string(),
        "hakmem: HAKMEM_TYPO=1: unknown variable, ignored"
    );
}
