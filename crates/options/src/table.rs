//! The options table: every `HAKMEM_*` variable, its type, default and
//! description (the source of `OPTIONS.md`).

use super::*;

/// The kind of a variable that overrides a policy field: a number in the
/// field's range (from the policy's field table).
const fn policy_int(key: Key) -> Kind {
    let (min, max) = key.range();
    Kind::Int { min, max }
}

/// Every variable hakmem reads, in [`Var`] order.
pub static TABLE: [Spec; VARS] = [
    Spec {
        var: Var::Mode,
        name: "HAKMEM_MODE",
        c_name: c"HAKMEM_MODE",
        kind: Kind::Choice(&MODE_NAMES),
        policy_field: None,
        default: "balanced",
        fallback: "using balanced",
        description: "Feature set (see the mode table): `minimal` turns every optimisation off \
                      (no bins, no caches, no pool retention); `fast` has bins and caches on the \
                      built-in policy; `balanced` adds a frozen policy from `HAKMEM_POLICY`; \
                      `learning` adds the online learner (its decisions are `tracing` events); \
                      `research` also prints each decision on stderr.",
    },
    Spec {
        var: Var::LearnWindowMs,
        name: "HAKMEM_LEARN_WINDOW_MS",
        c_name: c"HAKMEM_LEARN_WINDOW_MS",
        kind: Kind::Int {
            min: 10,
            max: 60_000,
        },
        policy_field: None,
        default: "50",
        fallback: "using 50",
        description: "Length of a learning window in ms: the learner measures, scores and may \
                      change the policy once per window (learning modes). Convergence takes \
                      about a hundred windows: 50 ms converges in seconds.",
    },
    Spec {
        var: Var::Policy,
        name: "HAKMEM_POLICY",
        c_name: c"HAKMEM_POLICY",
        kind: Kind::Path,
        policy_field: None,
        default: "unset",
        fallback: "ignored",
        description: "Policy file to run on (format `hakmem-policy v1`); the learning modes \
                      start FROZEN on it. A malformed file is reported in one line and the \
                      built-in policy is used. Not read in `minimal` and `fast`.",
    },
    Spec {
        var: Var::PolicySave,
        name: "HAKMEM_POLICY_SAVE",
        c_name: c"HAKMEM_POLICY_SAVE",
        kind: Kind::Path,
        policy_field: None,
        default: "unset",
        fallback: "ignored",
        description: "Where to write the policy at exit (in the learning modes, the converged \
                      one). An output path: `%p` is replaced by the process id, `%e` by the \
                      executable's name, `%%` by `%`; written under a temporary name and \
                      renamed.",
    },
    Spec {
        var: Var::Stats,
        name: "HAKMEM_STATS",
        c_name: c"HAKMEM_STATS",
        kind: Kind::Bool,
        policy_field: None,
        default: "0",
        fallback: "using 0",
        description: "Print the allocator's counters at exit (per tier and class).",
    },
    Spec {
        var: Var::Selector,
        name: "HAKMEM_SELECTOR",
        c_name: c"HAKMEM_SELECTOR",
        kind: Kind::Choice(&SELECTOR_NAMES),
        policy_field: None,
        default: "ucb1",
        fallback: "using ucb1",
        description: "The learner's bandit: `ucb1` (UCB1) or `elo` (ELO ratings from pairwise \
                      comparisons, softmax selection).",
    },
    Spec {
        var: Var::CanaryPermille,
        name: "HAKMEM_CANARY_PERMILLE",
        c_name: c"HAKMEM_CANARY_PERMILLE",
        kind: Kind::Int { min: 0, max: 1000 },
        policy_field: None,
        default: "50",
        fallback: "using 50",
        description: "In the CANARY state, the share of windows (per mille) that try an \
                      alternative to the frozen policy.",
    },
    Spec {
        var: Var::Sites,
        name: "HAKMEM_SITES",
        c_name: c"HAKMEM_SITES",
        kind: Kind::Bool,
        policy_field: None,
        default: "0",
        fallback: "using 0",
        description: "Profile allocation call-sites (sampled return addresses) and report \
                      them at exit.",
    },
    Spec {
        var: Var::SitesSample,
        name: "HAKMEM_SITES_SAMPLE",
        c_name: c"HAKMEM_SITES_SAMPLE",
        kind: Kind::Int { min: 0, max: 30 },
        policy_field: None,
        default: "12",
        fallback: "using 12",
        description: "Call-site sampling: one `malloc` in 2^N is recorded.",
    },
    Spec {
        var: Var::SitesJson,
        name: "HAKMEM_SITES_JSON",
        c_name: c"HAKMEM_SITES_JSON",
        kind: Kind::Path,
        policy_field: None,
        default: "unset",
        fallback: "ignored",
        description: "Also write the call-site report as JSON to this path at exit. An output \
                      path: `%p` is replaced by the process id, `%e` by the executable's name, \
                      `%%` by `%` (`sites.%p.json`: one report per process); written under a \
                      temporary name and renamed.",
    },
    Spec {
        var: Var::SitePlacement,
        name: "HAKMEM_SITE_PLACEMENT",
        c_name: c"HAKMEM_SITE_PLACEMENT",
        kind: Kind::Bool,
        policy_field: None,
        default: "1",
        fallback: "using 1",
        description: "Serve recorded allocations (`alloc_cs`, `hak_alloc_cs`, sampled \
                      `malloc`) of sites seen to be long-lived from separate slabs.",
    },
    Spec {
        var: Var::ThpSuperslabs,
        name: "HAKMEM_THP_SUPERSLABS",
        c_name: c"HAKMEM_THP_SUPERSLABS",
        kind: Kind::Choice(&THP_NAMES),
        policy_field: None,
        default: "auto",
        fallback: "using auto",
        description: "Transparent huge pages for the 2 MiB superslabs (tiny and mid blocks): \
                      far fewer page faults and TLB misses, up to 2 MiB resident per partly \
                      used superslab. `auto` reads THP `enabled` and `defrag` once: with \
                      `defrag` `defer` or `never` every new superslab is advised \
                      `MADV_HUGEPAGE`; otherwise (a huge-page fault could compact memory on \
                      the allocating thread) only while free huge pages are at hand \
                      (`/proc/buddyinfo`, re-read by the background thread), which also \
                      prepares a few huge superslabs ahead of need; the other faults stay \
                      4 KiB. `1` advises every new superslab whatever `defrag` says (may \
                      stall); `0` none. Nothing when THP is `never`.",
    },
    Spec {
        var: Var::Secure,
        name: "HAKMEM_SECURE",
        c_name: c"HAKMEM_SECURE",
        kind: Kind::Bool,
        policy_field: None,
        default: "0",
        fallback: "using 0",
        description: "Secure mode: extra checks against heap misuse on every free.",
    },
    Spec {
        var: Var::OnError,
        name: "HAKMEM_ON_ERROR",
        c_name: c"HAKMEM_ON_ERROR",
        kind: Kind::Choice(&ON_ERROR_NAMES),
        policy_field: None,
        default: "abort",
        fallback: "using abort",
        description: "What a detected heap misuse does after its one-line report: `abort`, or \
                      `warn` and carry on where that is safe.",
    },
    Spec {
        var: Var::Check,
        name: "HAKMEM_CHECK",
        c_name: c"HAKMEM_CHECK",
        kind: Kind::Bool,
        policy_field: None,
        default: "0 (1 in builds with the `check` feature)",
        fallback: "using the default",
        description: "Debugging: validate the calling thread's whole heap (bins, slabs, \
                      superslab lists, page-map entries) on every refill and spill and at \
                      thread exit, and the large tier on every large allocation and free; a \
                      broken invariant is reported in one line (`hakmem: invariant broken: \
                      ...`) and aborts, whatever `HAKMEM_ON_ERROR` says. Slow: each check walks \
                      the whole heap. No cost when off.",
    },
    Spec {
        var: Var::DecayMs,
        name: "HAKMEM_DECAY_MS",
        c_name: c"HAKMEM_DECAY_MS",
        kind: policy_int(Key::DecayMs),
        policy_field: Some(Key::DecayMs),
        default: "the policy's `decay_ms` (1000)",
        fallback: "using the policy's value",
        description: "Overrides the policy's `decay_ms`: cached memory unused this long is \
                      purged.",
    },
    Spec {
        var: Var::MemBudgetMb,
        name: "HAKMEM_MEM_BUDGET_MB",
        c_name: c"HAKMEM_MEM_BUDGET_MB",
        kind: Kind::Int {
            min: 0,
            max: 1 << 24,
        },
        policy_field: None,
        default: "0",
        fallback: "using 0",
        description: "Memory budget in MiB of resident memory (0: none), held in every \
                      mode: caches are sized to it, blocks above 32 KiB get their own \
                      mappings, superslabs no huge pages, and the background thread \
                      (processes with a second thread) reads RSS every tick: from 3/4 of \
                      the budget nothing is kept beyond use, from 7/8 what is free goes \
                      back at once. The learner also scores a policy over it strongly \
                      negative. Costs page faults where the program frees and reallocates \
                      much.",
    },
    Spec {
        var: Var::Prof,
        name: "HAKMEM_PROF",
        c_name: c"HAKMEM_PROF",
        kind: Kind::Bool,
        policy_field: None,
        default: "0",
        fallback: "using 0",
        description: "Profile hakmem's own paths: sampled calls are timed per category (tiny \
                      pop, refill and spill, mid, large cache hit and map, mmap, purge, munmap, \
                      remote free and drain, adopt, realloc, calloc zeroing) and printed as a \
                      table at exit (count, estimated total, average, P50, P99 ns); also \
                      `hakmem::profile()`.",
    },
    Spec {
        var: Var::ProfSample,
        name: "HAKMEM_PROF_SAMPLE",
        c_name: c"HAKMEM_PROF_SAMPLE",
        kind: Kind::Int { min: 0, max: 24 },
        policy_field: None,
        default: "12",
        fallback: "using 12",
        description: "Profiler: about one call in 2^N is timed (system calls: every one).",
    },
    Spec {
        var: Var::ProfJson,
        name: "HAKMEM_PROF_JSON",
        c_name: c"HAKMEM_PROF_JSON",
        kind: Kind::Path,
        policy_field: None,
        default: "unset",
        fallback: "ignored",
        description: "Profiler: also write the profile as JSON to this path at exit.",
    },
    Spec {
        var: Var::PolicyDir,
        name: "HAKMEM_POLICY_DIR",
        c_name: c"HAKMEM_POLICY_DIR",
        kind: Kind::Path,
        policy_field: None,
        default: "unset",
        fallback: "ignored",
        description: "Directory of learned policies, one per executable (named after its file \
                      name and a hash of its path, size and modification time): in the \
                      learning modes the policy is saved there at exit, and a later run of \
                      the same executable starts FROZEN on it (in `balanced`, runs on it). \
                      A file that does not parse is reported in one line and ignored; \
                      `HAKMEM_POLICY` takes precedence. The directory must exist.",
    },
    Spec {
        var: Var::Trace,
        name: "HAKMEM_TRACE",
        c_name: c"HAKMEM_TRACE",
        kind: Kind::Int {
            min: 0,
            max: 1 << 16,
        },
        policy_field: None,
        default: "0",
        fallback: "using 0",
        description: "Debug ring: keep the last N allocations and frees of each thread \
                      (address, size, caller; N rounded up to a power of two, at most 2048) so \
                      that a misuse report says where the block was allocated and freed \
                      before, and by which thread. Small calls take the checked fast path, as \
                      in secure mode, which records each one (about 2.5× the default's \
                      instructions per call). Secure mode keeps 2048 unless this is set; 0 \
                      turns it off.",
    },
    Spec {
        var: Var::Background,
        name: "HAKMEM_BACKGROUND",
        c_name: c"HAKMEM_BACKGROUND",
        kind: Kind::Bool,
        policy_field: None,
        default: "1",
        fallback: "using 1",
        description: "The background maintenance thread: on the decay clock (a tick every \
                      `decay_ms`/8, 10..=250 ms) it returns memory unused for the decay time \
                      from the superslab pool, the large cache, exited threads' superslabs and \
                      idle threads' heaps, without waiting for allocator calls. `0`: decay is \
                      driven by allocator calls only.",
    },
];

/// Writes the options table and the mode matrix as Markdown (what the
/// README and `OPTIONS.md` show).
pub fn write_markdown(w: &mut dyn fmt::Write) -> fmt::Result {
    writeln!(w, "| variable | values | default | meaning |")?;
    writeln!(w, "|---|---|---|---|")?;
    for spec in &TABLE {
        write!(w, "| `{}` | ", spec.name)?;
        match spec.kind {
            Kind::Bool => write!(w, "`0` \\| `1`")?,
            Kind::Int { min, max } => write!(w, "{min} ..= {max}")?,
            Kind::Choice(names) => {
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        write!(w, " \\| ")?;
                    }
                    write!(w, "`{n}`")?;
                }
            }
            Kind::Path => write!(w, "path (≤ {} bytes)", PATH_MAX - 1)?,
        }
        let default = spec.default;
        if default.contains('`') || default == "unset" {
            write!(w, " | {default} | ")?;
        } else {
            write!(w, " | `{default}` | ")?;
        }
        writeln!(w, "{} |", spec.description)?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "| mode | bins and caches | `HAKMEM_POLICY` | learner | decisions on stderr |"
    )?;
    writeln!(w, "|---|---|---|---|---|")?;
    for mode in Mode::ALL {
        let f = mode.features();
        let yn = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            w,
            "| `{}`{} | {} | {} | {} | {} |",
            mode.name(),
            if mode == Mode::Balanced {
                " (default)"
            } else {
                ""
            },
            yn(f.contains(Features::CACHES)),
            yn(f.contains(Features::POLICY_FILE)),
            yn(f.contains(Features::LEARNER)),
            yn(f.contains(Features::VERBOSE))
        )?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "Unset or empty variables take their defaults. Booleans also accept \
         `true`/`false`, `yes`/`no`, `on`/`off`; names are case-insensitive. A bad value \
         is reported in one line (`hakmem: HAKMEM_X=value: <problem>, using <default>`) \
         and the default is used; an unknown `HAKMEM_*` variable is reported too \
         (`HAKMEM_BENCH*` belongs to the benchmark harness and is left alone)."
    )
}
