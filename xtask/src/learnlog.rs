//! The learner's events in a `HAKMEM_MODE=research` run's standard error
//! (`hakmem: learner: <event> (t=… ms ops … p99 … ns rss … MiB)`, one line per
//! event), timed by their arrival, and what the A/B reports of them: when
//! the learner reached FROZEN, which changes it kept, and whether it
//! noticed a phase change and converged again.

/// What a line says the learner did.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A lifecycle transition: `Converged`, `CanaryStarted`, `CanaryEnded`,
    /// `CanaryWon`, `Shifted`, `Relearn`.
    Phase(String),
    /// A change was accepted (on probation).
    Accepted { knob: String, from: u32, to: u32 },
    /// A change survived its probation.
    Kept { knob: String, level: u32 },
    /// A change was taken back.
    RolledBack { knob: String, from: u32, to: u32 },
    /// Anything else (`EpochStarted`, `Explore`, canary trials, ...): its
    /// name.
    Other(String),
}

/// One event and when it was printed (seconds since the process started).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t: f64,
    pub kind: Kind,
}

const PREFIX: &str = "hakmem: learner: ";

/// The `name: value` fields of `{ knob: X, from: 1, to: 2 }`.
fn field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let inner = body.split_once('{')?.1.rsplit_once('}')?.0;
    inner.split(',').find_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// Parses one line of standard error; `None` for lines that are not
/// learner events.
pub fn parse_line(t: f64, line: &str) -> Option<Event> {
    let rest = line.strip_prefix(PREFIX)?;
    // the measurements in parentheses: `(t=… ms ops …)`, or `(ops …)` from
    // builds before the learner's clock was printed
    let body = match rest.rfind(" (t=").or_else(|| rest.rfind(" (ops ")) {
        Some(i) => &rest[..i],
        None => rest,
    }
    .trim();
    let name = body.split([' ', '(', '{']).next().unwrap_or("");
    let num = |k: &str| field(body, k).and_then(|v| v.parse::<u32>().ok());
    let knob = || field(body, "knob").map(String::from);
    let kind = match name {
        "Phase" => Kind::Phase(
            body.strip_prefix("Phase(")?
                .strip_suffix(')')?
                .trim()
                .to_string(),
        ),
        "Accepted" => Kind::Accepted {
            knob: knob()?,
            from: num("from")?,
            to: num("to")?,
        },
        "Kept" => Kind::Kept {
            knob: knob()?,
            level: num("level")?,
        },
        "RolledBack" => Kind::RolledBack {
            knob: knob()?,
            from: num("from")?,
            to: num("to")?,
        },
        "" => return None,
        other => Kind::Other(other.to_string()),
    };
    Some(Event { t, kind })
}

/// Every learner event among timed lines, in order.
pub fn parse(lines: &[(f64, String)]) -> Vec<Event> {
    lines
        .iter()
        .filter_map(|(t, l)| parse_line(*t, l))
        .collect()
}

/// What one run's events add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// When the learner first reached FROZEN.
    pub converged_at: Option<f64>,
    /// How long that took from the start of its phase: the process start,
    /// or the last phase change noticed before it.
    pub converged_in: Option<f64>,
    /// Changes accepted, kept, rolled back.
    pub accepted: usize,
    pub kept: usize,
    pub rolled_back: usize,
    /// When a phase change was noticed (`Shifted` from FROZEN/CANARY,
    /// `Relearn` while learning).
    pub shifts: Vec<f64>,
    /// When it reached FROZEN after the first phase change (whether or not
    /// it had before it).
    pub reconverged_at: Option<f64>,
    /// The kept changes, as `knob a→b @t`.
    pub changes: Vec<String>,
}

/// Summarises a run's events.
pub fn summarise(events: &[Event]) -> Summary {
    let mut s = Summary::default();
    let mut pending: Option<(String, u32, u32)> = None;
    let mut phase_start = 0.0;
    for e in events {
        match &e.kind {
            Kind::Phase(p) if p == "Converged" => {
                if s.converged_at.is_none() {
                    s.converged_at = Some(e.t);
                    s.converged_in = Some(e.t - phase_start);
                }
                if !s.shifts.is_empty() && s.reconverged_at.is_none() {
                    s.reconverged_at = Some(e.t);
                }
            }
            Kind::Phase(p) if p == "Shifted" || p == "Relearn" => {
                s.shifts.push(e.t);
                if s.converged_at.is_none() {
                    phase_start = e.t;
                }
            }
            Kind::Accepted { knob, from, to } => {
                s.accepted += 1;
                pending = Some((knob.clone(), *from, *to));
            }
            Kind::Kept { knob, level } => {
                s.kept += 1;
                let from = match &pending {
                    Some((k, f, _)) if k == knob => *f,
                    _ => *level,
                };
                s.changes
                    .push(format!("{knob} {from}→{level} @{:.1}s", e.t));
                pending = None;
            }
            Kind::RolledBack { .. } => {
                s.rolled_back += 1;
                pending = None;
            }
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[(f64, &str)]) -> Vec<(f64, String)> {
        v.iter().map(|(t, l)| (*t, l.to_string())).collect()
    }

    #[test]
    fn parses_the_event_lines() {
        let e = parse_line(
            1.5,
            "hakmem: learner: Accepted { knob: TinyCapSmall, from: 2, to: 3 } (ops 1421366 p99 41 ns rss 5 MiB)",
        )
        .unwrap();
        assert_eq!(e.t, 1.5);
        assert_eq!(
            e.kind,
            Kind::Accepted {
                knob: "TinyCapSmall".into(),
                from: 2,
                to: 3
            }
        );
        assert_eq!(
            parse_line(
                1.6,
                "hakmem: learner: Kept { knob: MidCapSmall, level: 2 } (t=1550 ms ops 9 p99 41 ns rss 5 MiB)",
            )
            .unwrap()
            .kind,
            Kind::Kept {
                knob: "MidCapSmall".into(),
                level: 2
            },
            "with the learner's clock"
        );
        assert_eq!(
            parse_line(
                2.0,
                "hakmem: learner: Phase(Converged) (ops 1 p99 0 ns rss 5 MiB)"
            )
            .unwrap()
            .kind,
            Kind::Phase("Converged".into())
        );
        assert_eq!(
            parse_line(
                2.0,
                "hakmem: learner: Kept { knob: LargeCacheBudget, level: 1 }"
            )
            .unwrap()
            .kind,
            Kind::Kept {
                knob: "LargeCacheBudget".into(),
                level: 1
            }
        );
        assert_eq!(
            parse_line(
                0.1,
                "hakmem: learner: Explore { knob: DecayMs, level: 2 } (ops 5 p99 1 ns rss 1 MiB)"
            )
            .unwrap()
            .kind,
            Kind::Other("Explore".into())
        );
        assert_eq!(parse_line(0.0, "HAKMEM_BENCH workload=x"), None);
        assert_eq!(parse_line(0.0, "hakmem: learner: "), None);
        assert_eq!(
            parse_line(0.0, "hakmem: learner: Accepted { knob: X }"),
            None,
            "malformed"
        );
    }

    #[test]
    fn summarises_convergence_changes_and_shifts() {
        let ev = parse(&lines(&[
            (0.05, "hakmem: learner: EpochStarted { knob: LargeCacheBudget } (ops 1 p99 1 ns rss 1 MiB)"),
            (0.9, "hakmem: learner: Accepted { knob: LargeCacheBudget, from: 2, to: 1 } (ops 1 p99 1 ns rss 1 MiB)"),
            (1.1, "hakmem: learner: Kept { knob: LargeCacheBudget, level: 1 } (ops 1 p99 1 ns rss 1 MiB)"),
            (2.0, "hakmem: learner: Accepted { knob: DecayMs, from: 3, to: 2 } (ops 1 p99 1 ns rss 1 MiB)"),
            (2.2, "hakmem: learner: RolledBack { knob: DecayMs, from: 2, to: 3 } (ops 1 p99 1 ns rss 1 MiB)"),
            (6.4, "hakmem: learner: Phase(Converged) (ops 1 p99 1 ns rss 1 MiB)"),
            (9.0, "hakmem: learner: Phase(Shifted) (ops 1 p99 1 ns rss 1 MiB)"),
            (9.5, "some other line"),
            (14.0, "hakmem: learner: Phase(Converged) (ops 1 p99 1 ns rss 1 MiB)"),
            (20.0, "hakmem: learner: Phase(Converged) (ops 1 p99 1 ns rss 1 MiB)"),
        ]));
        assert_eq!(ev.len(), 9);
        let s = summarise(&ev);
        assert_eq!(s.converged_at, Some(6.4));
        assert_eq!(s.converged_in, Some(6.4));
        assert_eq!((s.accepted, s.kept, s.rolled_back), (2, 1, 1));
        assert_eq!(s.shifts, [9.0]);
        assert_eq!(s.reconverged_at, Some(14.0));
        assert_eq!(s.changes, ["LargeCacheBudget 2→1 @1.1s"]);
        assert_eq!(summarise(&[]), Summary::default());
        // a phase change before the first FROZEN: it counts from the change
        let ev = parse(&lines(&[
            (
                5.0,
                "hakmem: learner: Phase(Relearn) (ops 1 p99 1 ns rss 1 MiB)",
            ),
            (
                5.5,
                "hakmem: learner: Phase(Relearn) (ops 1 p99 1 ns rss 1 MiB)",
            ),
            (
                11.0,
                "hakmem: learner: Phase(Converged) (ops 1 p99 1 ns rss 1 MiB)",
            ),
        ]));
        let s = summarise(&ev);
        assert_eq!(s.converged_at, Some(11.0));
        assert_eq!(s.converged_in, Some(5.5));
        assert_eq!(s.shifts, [5.0, 5.5]);
        assert_eq!(s.reconverged_at, Some(11.0));
    }
}
