//! `parsers`: arbitrary bytes into hakmem's two parsers of outside input,
//! the policy-file parser (`FrozenPolicy::parse`, `HAKMEM_POLICY=path`)
//! and the option parser (`Options::from_lookup` and `check_names`, the
//! `HAKMEM_*` environment).
//!
//! The first byte picks the parser (even: policy file, odd: options).
//!
//! * Policy file: the rest is the file. No panic; an accepted file gives a
//!   policy that passes `validate`, serialises into `POLICY_FILE_MAX`
//!   bytes, and parses back to the same policy (and the same bytes); a
//!   refused one names a line that exists (or 0) and formats.
//! * Options: the rest is a list of records separated by `\n`; a record
//!   whose first byte is below 0xf0 sets `TABLE[byte % VARS]` to the
//!   record's remaining bytes (the last one wins), any other record is a
//!   raw `NAME=value` environment entry for `check_names`. No panic; every
//!   warning formats as one line of at most 256 bytes ending in `\n`; the
//!   starting policy the options give (`initial_policy` over the built-in
//!   one) is valid and round-trips through `serialize`/`parse`.

#![no_main]

use hakmem_options::{Options, TABLE, VARS};
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY, POLICY_FILE_MAX};
use libfuzzer_sys::fuzz_target;

/// `p` is valid and survives `serialize` then `parse` unchanged.
fn round_trip(p: &FrozenPolicy) {
    p.validate().expect("an accepted policy fails validate");
    let mut buf = [0u8; POLICY_FILE_MAX];
    let n = p
        .serialize(&mut buf)
        .expect("a valid policy does not fit POLICY_FILE_MAX");
    assert_eq!(n, p.serialized_len());
    let back = FrozenPolicy::parse(&buf[..n]).unwrap_or_else(|e| {
        panic!(
            "serialized policy refused: {e}\n{}",
            String::from_utf8_lossy(&buf[..n])
        )
    });
    assert_eq!(&back, p, "policy changed through serialize/parse");
    let mut again = [0u8; POLICY_FILE_MAX];
    let m = back.serialize(&mut again).expect("serialize again");
    assert_eq!(&buf[..n], &again[..m], "serialize is not stable");
}

fn policy_file(input: &[u8]) {
    match FrozenPolicy::parse(input) {
        Ok(p) => round_trip(&p),
        Err(e) => {
            let lines = input.split(|&b| b == b'\n').count();
            assert!(
                (e.line as usize) <= lines,
                "error on line {} of {lines}",
                e.line
            );
            let _ = e.to_string();
        }
    }
}

fn options(input: &[u8]) {
    let mut values: [Option<&[u8]>; VARS] = [None; VARS];
    let mut raw = Vec::new();
    for rec in input.split(|&b| b == b'\n') {
        match rec.split_first() {
            Some((&b, value)) if b < 0xf0 => values[b as usize % VARS] = Some(value),
            Some((_, entry)) => raw.push(entry),
            None => {}
        }
    }
    let (opts, mut warnings) = Options::from_lookup(|name| {
        let i = TABLE
            .iter()
            .position(|s| s.name == name)
            .expect("a name of TABLE");
        values[i]
    });
    Options::check_names(raw.iter().copied(), &mut warnings);
    for w in warnings.iter() {
        let line = w.line();
        let bytes = line.as_bytes();
        assert!(
            !bytes.is_empty() && bytes.len() <= 256,
            "warning line of {} bytes",
            bytes.len()
        );
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert!(
            !bytes[..bytes.len() - 1].contains(&b'\n'),
            "warning spans lines"
        );
        assert!(w.value().len() <= 64);
    }
    assert_eq!(warnings.len(), warnings.iter().count());
    round_trip(&opts.initial_policy(&DEFAULT_POLICY));
}

fuzz_target!(|data: &[u8]| {
    if let Some((&sel, rest)) = data.split_first() {
        if sel & 1 == 0 {
            policy_file(rest);
        } else {
            options(rest);
        }
    }
});
