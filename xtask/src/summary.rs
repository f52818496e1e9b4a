//! From runs to cells: medians, ranges, ratios, failures.
use std::collections::BTreeMap;

use crate::record::Record;

/// One run of one workload under one allocator.
#[derive(Debug, Clone)]
pub struct Run {
    pub workload: String,
    pub allocator: String,
    pub rep: usize,
    /// The record, or why the run does not count.
    pub result: Result<Record, String>,
    /// Footnote (e.g. the preload did not take for hakmem).
    pub note: Option<String>,
    pub wall_secs: f64,
}

/// Median, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// `None` for an empty slice.
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One workload under one allocator, over all repetitions.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Every run succeeded: statistics of every numeric field.
    Ok {
        stats: BTreeMap<String, Stat>,
        runs: usize,
        note: Option<String>,
    },
    /// At least one run failed.
    Failed {
        reason: String,
        failed: usize,
        runs: usize,
    },
    /// Not run (e.g. the matrix was interrupted).
    Missing,
}

impl Cell {
    /// The statistics of a field, for a successful cell.
    pub fn stat(&self, key: &str) -> Option<Stat> {
        match self {
            Cell::Ok { stats, .. } => stats.get(key).copied(),
            _ => None,
        }
    }

    /// The median of a field, for a successful cell.
    pub fn median(&self, key: &str) -> Option<f64> {
        self.stat(key).map(|s| s.median)
    }
}

/// The summarised matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub workloads: Vec<String>,
    pub allocators: Vec<String>,
    /// `cells[w][a]`.
    pub cells: Vec<Vec<Cell>>,
}

/// Summarises the runs of one cell.
pub fn cell(runs: &[&Run]) -> Cell {
    if runs.is_empty() {
        return Cell::Missing;
    }
    let failures: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(String::as_str))
        .collect();
    if let Some(first) = failures.first() {
        return Cell::Failed {
            reason: first.to_string(),
            failed: failures.len(),
            runs: runs.len(),
        };
    }
    let records: Vec<&Record> = runs.iter().filter_map(|r| r.result.as_ref().ok()).collect();
    let mut keys: Vec<&String> = records.iter().flat_map(|r| r.fields.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut stats = BTreeMap::new();
    for k in keys {
        let values: Vec<f64> = records.iter().filter_map(|r| r.num(k)).collect();
        // A field counts only when every run has a number for it.
        if values.len() == records.len() {
            if let Some(s) = Stat::of(&values) {
                stats.insert(k.clone(), s);
            }
        }
    }
    Cell::Ok {
        stats,
        runs: runs.len(),
        note: runs.iter().find_map(|r| r.note.clone()),
    }
}

/// Summarises all runs into the matrix of `workloads` x `allocators`.
pub fn summarise(workloads: &[String], allocators: &[String], runs: &[Run]) -> Matrix {
    let cells = workloads
        .iter()
        .map(|w| {
            allocators
                .iter()
                .map(|a| {
                    let mine: Vec<&Run> = runs
                        .iter()
                        .filter(|r| &r.workload == w && &r.allocator == a)
                        .collect();
                    cell(&mine)
                })
                .collect()
        })
        .collect();
    Matrix {
        workloads: workloads.to_vec(),
        allocators: allocators.to_vec(),
        cells,
    }
}

impl Matrix {
    /// The cell of workload `w` under allocator `a`.
    pub fn get(&self, w: usize, a: &str) -> Option<&Cell> {
        let j = self.allocators.iter().position(|x| x == a)?;
        self.cells.get(w)?.get(j)
    }

    /// The median of `key` in cell (`w`, `a`) divided by the reference
    /// allocator's median in the same row.
    pub fn ratio(&self, w: usize, a: usize, key: &str) -> Option<f64> {
        let reference = self.get(w, crate::allocators::REFERENCE)?.median(key)?;
        let mine = self.cells[w][a].median(key)?;
        (reference > 0.0).then(|| mine / reference)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::record::parse_line;

    pub fn run(w: &str, a: &str, ops_per_sec: Option<f64>) -> Run {
        Run {
            workload: w.into(),
            allocator: a.into(),
            rep: 0,
            result: match ops_per_sec {
                Some(v) => Ok(parse_line(&format!(
                    "HAKMEM_BENCH workload={w} ops=10 secs=1 ops_per_sec={v} peak_rss_kb={} minflt=5 p50_ns=NA malloc_lib=x.so",
                    v * 2.0
                ))
                .unwrap()),
                None => Err("SIGSEGV".into()),
            },
            note: None,
            wall_secs: 0.1,
        }
    }

    #[test]
    fn stat_median_min_max() {
        assert_eq!(
            Stat::of(&[3.0, 1.0, 2.0]),
            Some(Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(Stat::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[]), None);
    }

    #[test]
    fn a_single_failed_run_fails_the_cell() {
        let runs = [
            run("w", "a", Some(1.0)),
            run("w", "a", None),
            run("w", "a", Some(3.0)),
        ];
        let refs: Vec<&Run> = runs.iter().collect();
        match cell(&refs) {
            Cell::Failed {
                reason,
                failed,
                runs,
            } => assert_eq!((reason.as_str(), failed, runs), ("SIGSEGV", 1, 3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(cell(&[]), Cell::Missing);
    }

    #[test]
    fn cells_keep_numeric_fields_and_ratios_use_mimalloc() {
        let runs = vec![
            run("w", "system", Some(10.0)),
            run("w", "mimalloc", Some(20.0)),
            run("w", "system", Some(30.0)),
            run("w", "mimalloc", Some(40.0)),
            run("w", "system", Some(20.0)),
            run("w", "mimalloc", Some(30.0)),
        ];
        let m = summarise(&["w".into()], &["system".into(), "mimalloc".into()], &runs);
        let sys = &m.cells[0][0];
        assert_eq!(
            sys.stat("ops_per_sec"),
            Some(Stat {
                median: 20.0,
                min: 10.0,
                max: 30.0
            })
        );
        assert_eq!(sys.median("peak_rss_kb"), Some(40.0));
        assert_eq!(sys.median("p50_ns"), None, "NA is not a number");
        assert_eq!(sys.median("malloc_lib"), None);
        assert_eq!(m.ratio(0, 0, "ops_per_sec"), Some(20.0 / 30.0));
        assert_eq!(m.ratio(0, 1, "ops_per_sec"), Some(1.0));
        let no_ref = summarise(&["w".into()], &["system".into()], &runs);
        assert_eq!(no_ref.ratio(0, 0, "ops_per_sec"), None);
    }
}
