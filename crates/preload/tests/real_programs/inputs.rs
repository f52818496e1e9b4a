//! Generated inputs of the real-program tests: a git history, a C file, a
//! SQL script and a small crate, each deterministic (a seeded `Rng`).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::common::Rng;

/// A `git fast-import` stream: ~300 commits on `main` touching ~60 text
/// files (edits, new files, deletions), topic branches merged back every 60
/// commits, and tags.
pub fn fast_import_stream() -> Vec<u8> {
    use std::collections::BTreeMap;
    let mut rng = Rng::new(2024);
    let mut out = Vec::new();
    let mut mark = 0u32;
    let mut time = 1_600_000_000u64;
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut main_head: Option<u32> = None;
    let line = |rng: &mut Rng| -> String {
        let n = 3 + rng.below(9) as usize;
        (0..n)
            .map(|_| {
                let len = 2 + rng.below(9) as usize;
                rng.word(len)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let data = |out: &mut Vec<u8>, body: &str| {
        out.extend_from_slice(format!("data {}\n{body}\n", body.len()).as_bytes());
    };
    let edit = |rng: &mut Rng, lines: &mut Vec<String>| {
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(lines.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if !lines.is_empty() && at < lines.len() => {
                    lines.remove(at);
                }
                1 if at < lines.len() => lines[at] = line(rng),
                _ => lines.insert(at, line(rng)),
            }
        }
    };
    fn commit_header(
        out: &mut Vec<u8>,
        branch: &str,
        mark: u32,
        time: u64,
        msg: &str,
        from: Option<u32>,
        merge: Option<u32>,
    ) {
        let mut s = format!("commit refs/heads/{branch}\nmark :{mark}\n");
        let _ = writeln!(s, "author A U Thor <author@example.com> {time} +0000");
        let _ = writeln!(
            s,
            "committer C O Mitter <committer@example.com> {time} +0000"
        );
        let _ = write!(s, "data {}\n{msg}\n", msg.len());
        if let Some(f) = from {
            let _ = writeln!(s, "from :{f}");
        }
        if let Some(m) = merge {
            let _ = writeln!(s, "merge :{m}");
        }
        out.extend_from_slice(s.as_bytes());
    }
    for n in 0..300u32 {
        mark += 1;
        time += 60 + rng.below(7200);
        let msg = format!("commit {n}: {}", line(&mut rng));
        commit_header(&mut out, "main", mark, time, &msg, main_head, None);
        main_head = Some(mark);
        let touched = if n == 0 { 40 } else { 1 + rng.below(4) };
        for _ in 0..touched {
            let name = format!("src/file{:02}.txt", rng.below(if n == 0 { 40 } else { 60 }));
            if n > 0 && rng.below(25) == 0 && name != "src/file00.txt" && files.contains_key(&name)
            {
                files.remove(&name);
                out.extend_from_slice(format!("D {name}\n").as_bytes());
                continue;
            }
            let lines = files.entry(name.clone()).or_insert_with(|| {
                let len = 20 + rng.below(120);
                (0..len).map(|_| line(&mut rng)).collect()
            });
            edit(&mut rng, lines);
            out.extend_from_slice(format!("M 100644 inline {name}\n").as_bytes());
            data(&mut out, &lines.join("\n"));
        }
        if n % 60 == 30 {
            // a topic branch forked here, merged 4 commits later on main
            let fork = mark;
            let mut topic_head = fork;
            for k in 0..4 {
                mark += 1;
                time += 300;
                let msg = format!("topic {n}.{k}: {}", line(&mut rng));
                commit_header(&mut out, "topic", mark, time, &msg, Some(topic_head), None);
                topic_head = mark;
                let name = format!("topic/t{}-{}.txt", n, rng.below(3));
                let lines = topic.entry(name.clone()).or_default();
                edit(&mut rng, lines);
                out.extend_from_slice(format!("M 100644 inline {name}\n").as_bytes());
                data(&mut out, &lines.join("\n"));
            }
            mark += 1;
            time += 60;
            let msg = format!("Merge topic at {n}");
            commit_header(
                &mut out,
                "main",
                mark,
                time,
                &msg,
                main_head,
                Some(topic_head),
            );
            main_head = Some(mark);
            for (name, lines) in &topic {
                out.extend_from_slice(format!("M 100644 inline {name}\n").as_bytes());
                data(&mut out, &lines.join("\n"));
            }
        }
        if n % 50 == 49 {
            out.extend_from_slice(
                format!(
                    "tag v{}\nfrom :{mark}\ntagger T Agger <t@example.com> {time} +0000\n",
                    n / 50
                )
                .as_bytes(),
            );
            data(&mut out, &format!("release {}", n / 50));
        }
    }
    out
}

/// A C file with a few hundred interdependent functions, a table and a main
/// that prints a checksum.
pub fn generated_c_source() -> String {
    let mut rng = Rng::new(5);
    let mut s = String::from("#include <stdio.h>\n#include <string.h>\n\n");
    let n = 300;
    for i in 0..n {
        let _ = writeln!(s, "static unsigned f{i}(unsigned x);");
    }
    let _ = writeln!(s, "static const char *names[] = {{");
    for i in 0..n {
        let len = 3 + rng.below(12) as usize;
        let _ = writeln!(s, "    \"{}{i}\",", rng.word(len));
    }
    let _ = writeln!(s, "}};\n");
    for i in 0..n {
        let (a, b, c) = (rng.below(1000), rng.below(31) + 1, rng.below(7) + 2);
        let _ = writeln!(s, "static unsigned f{i}(unsigned x) {{");
        let _ = writeln!(s, "    unsigned a = x * {a}u + {i}u;");
        let _ = writeln!(s, "    switch (a % {c}u) {{");
        for k in 0..c {
            let callee = if i > 0 { rng.below(i) } else { 0 };
            let body = if i > 0 && k % 2 == 0 {
                format!("a ^= f{callee}(a >> {b});")
            } else {
                format!("a = (a << {}) | (a >> {});", b % 31 + 1, 32 - (b % 31 + 1))
            };
            let _ = writeln!(s, "    case {k}u: {body} break;");
        }
        let _ = writeln!(s, "    }}");
        let _ = writeln!(
            s,
            "    for (unsigned i = 0; i < {c}u; i++) a += (a >> 3) ^ (unsigned)strlen(names[{i}]) ^ i;"
        );
        let _ = writeln!(s, "    return x > 4096u ? a : a + (x & 7u);\n}}\n");
    }
    let _ = writeln!(s, "int main(void) {{");
    let _ = writeln!(s, "    unsigned sum = 0;");
    let _ = writeln!(
        s,
        "    for (unsigned v = 0; v < 2000u; v++) sum = sum * 31u + f{}(v) + f{}(v * 7u);",
        n - 1,
        n / 2
    );
    let _ = writeln!(s, "    printf(\"checksum %u\\n\", sum);\n    return 0;\n}}");
    s
}

/// A SQL script: two tables, 100 000 + 30 000 rows inserted by individual
/// INSERT statements in transactions of 10 000, indexes, then aggregate,
/// join, LIKE, window-function, recursive-CTE, JSON and printf queries, an
/// UPDATE, a DELETE, integrity_check, VACUUM, and queries again.
pub fn sqlite_script() -> String {
    let mut rng = Rng::new(31337);
    let cities = [
        "amsterdam",
        "berlin",
        "cairo",
        "delhi",
        "edinburgh",
        "fukuoka",
        "geneva",
        "hanoi",
        "istanbul",
        "jakarta",
        "kyoto",
        "lima",
        "madrid",
        "nairobi",
        "oslo",
        "porto",
    ];
    let mut s = String::with_capacity(16 << 20);
    s.push_str(
        "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, \
         age INT, score REAL, bio TEXT);\n\
         CREATE TABLE orders(id INTEGER PRIMARY KEY, person INT REFERENCES people(id), \
         item TEXT, qty INT, price REAL);\n",
    );
    for (table, rows) in [("people", 100_000u64), ("orders", 30_000)] {
        for id in 1..=rows {
            if id % 10_000 == 1 {
                s.push_str("BEGIN;\n");
            }
            if table == "people" {
                let name_len = 4 + rng.below(8) as usize;
                let name = rng.word(name_len);
                let words = 3 + rng.below(30);
                let bio: Vec<String> = (0..words)
                    .map(|_| {
                        let len = 2 + rng.below(9) as usize;
                        rng.word(len)
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "INSERT INTO people VALUES({id}, '{name}', '{}', {}, {}.{:03}, '{}');",
                    cities[rng.below(16) as usize],
                    18 + rng.below(70),
                    rng.below(1000),
                    rng.below(1000),
                    bio.join(" ")
                );
            } else {
                let item_len = 3 + rng.below(10) as usize;
                let item = rng.word(item_len);
                let _ = writeln!(
                    s,
                    "INSERT INTO orders(person, item, qty, price) VALUES({}, '{item}', {}, {}.{:02});",
                    1 + rng.below(100_000),
                    1 + rng.below(20),
                    rng.below(500),
                    rng.below(100)
                );
            }
            if id % 10_000 == 0 {
                s.push_str("COMMIT;\n");
            }
        }
    }
    s.push_str(
        "CREATE INDEX people_city_age ON people(city, age);
CREATE INDEX people_name ON people(name);
CREATE INDEX orders_person ON orders(person);
SELECT city, count(*), avg(age), round(sum(score), 2) FROM people GROUP BY city ORDER BY city;
SELECT id, name, score FROM people WHERE city = 'kyoto' AND age BETWEEN 30 AND 40
  ORDER BY score DESC, id LIMIT 20;
SELECT p.city, count(o.id), round(sum(o.qty * o.price), 2) FROM people p
  JOIN orders o ON o.person = p.id GROUP BY p.city ORDER BY 3 DESC, 1 LIMIT 10;
SELECT count(*) FROM people WHERE name LIKE '%ab%' OR bio LIKE '%xyz%';
SELECT group_concat(name, ',') FROM (SELECT name FROM people ORDER BY name, id LIMIT 60);
SELECT id, name, city, rank() OVER (PARTITION BY city ORDER BY score DESC, id) AS r
  FROM people WHERE id % 997 = 0 ORDER BY id;
WITH RECURSIVE fib(a, b, n) AS (SELECT 0, 1, 0 UNION ALL SELECT b, a + b, n + 1 FROM fib
  WHERE n < 80) SELECT n, a FROM fib WHERE n % 10 = 0;
CREATE TABLE docs AS SELECT json_object('id', id, 'name', name, 'tags',
  json_array(city, age)) AS doc FROM people WHERE id % 50 = 0;
SELECT count(*), sum(json_extract(doc, '$.id')), max(length(doc)) FROM docs;
UPDATE people SET bio = bio || ' ' || upper(substr(name, 1, 3)) || printf('%05d', id)
  WHERE age > 60;
DELETE FROM orders WHERE qty < 4;
SELECT count(*), sum(length(bio)), max(length(bio)) FROM people;
SELECT printf('%010.3f', avg(price)), count(DISTINCT item) FROM orders;
SELECT city, group_concat(DISTINCT age) FROM (SELECT city, age FROM people WHERE id < 2000
  ORDER BY age) GROUP BY city ORDER BY city;
PRAGMA integrity_check;
VACUUM;
SELECT count(*), sum(id) FROM people;
SELECT count(*), sum(qty) FROM orders;
",
    );
    s
}

/// Writes a tiny crate with no registry dependencies: a path dependency, a
/// build script that generates a table, and a binary that prints checksums.
pub fn write_small_crate(dir: &Path) {
    let files: [(&str, &str); 5] = [
        (
            "Cargo.toml",
            "[package]\nname = \"hakmem-cargo-probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             build = \"build.rs\"\n\n[dependencies]\nprobe-helper = { path = \"helper\" }\n\n\
             [workspace]\n",
        ),
        (
            "build.rs",
            "use std::fmt::Write;\nfn main() {\n    let mut s = String::from(\"pub const TABLE: [u64; 256] = [\");\n    \
             let mut x = 0x9E37_79B9_7F4A_7C15u64;\n    for _ in 0..256 {\n        x ^= x << 13; x ^= x >> 7; x ^= x << 17;\n        \
             write!(s, \"{x},\").unwrap();\n    }\n    s.push_str(\"];\\n\");\n    \
             let out = std::env::var(\"OUT_DIR\").unwrap();\n    \
             std::fs::write(std::path::Path::new(&out).join(\"table.rs\"), s).unwrap();\n    \
             println!(\"cargo:rerun-if-changed=build.rs\");\n}\n",
        ),
        (
            "src/main.rs",
            "include!(concat!(env!(\"OUT_DIR\"), \"/table.rs\"));\n\
             use std::collections::{BTreeMap, HashMap};\n\
             fn main() {\n    let words = probe_helper::words(5000);\n    \
             let mut freq: BTreeMap<&str, usize> = BTreeMap::new();\n    \
             for w in &words { *freq.entry(w.as_str()).or_default() += 1; }\n    \
             let mut by_len: HashMap<usize, Vec<String>> = HashMap::new();\n    \
             for w in &words { by_len.entry(w.len()).or_default().push(w.clone()); }\n    \
             let mut lens: Vec<_> = by_len.iter().map(|(k, v)| (*k, v.len())).collect();\n    \
             lens.sort();\n    println!(\"distinct {} lens {:?}\", freq.len(), lens);\n    \
             println!(\"checksum {}\", probe_helper::checksum(&words) ^ TABLE.iter().fold(0u64, |a, x| a.rotate_left(5) ^ x));\n}\n",
        ),
        (
            "helper/Cargo.toml",
            "[package]\nname = \"probe-helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        ),
        (
            "helper/src/lib.rs",
            "pub fn words(n: usize) -> Vec<String> {\n    let mut x = 12345u64;\n    (0..n).map(|_| {\n        \
             x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);\n        \
             let len = 2 + (x >> 60) as usize;\n        \
             (0..len).map(|i| (b'a' + ((x >> (i * 5 % 60)) % 6) as u8) as char).collect()\n    }).collect()\n}\n\
             pub fn checksum<T: AsRef<str>>(items: &[T]) -> u64 {\n    \
             items.iter().fold(0u64, |a, s| a.wrapping_mul(31).wrapping_add(s.as_ref().bytes().map(u64::from).sum::<u64>()))\n}\n",
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
    }
}
