//! The whole test harness of this binary runs on hakmem.
#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

#[test]
fn vectors_strings_and_maps() {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 100_000 * 99_999 / 2);
    let s: Vec<String> = (0..10_000).map(|i| format!("item-{i}")).collect();
    assert_eq!(s[1234], "item-1234");
    let mut m = std::collections::HashMap::new();
    for i in 0..50_000u32 {
        m.insert(i, vec![i as u8; (i % 300) as usize]);
    }
    assert_eq!(m[&299].len(), 299);
    let big = vec![7u8; 5 << 20];
    assert_eq!(big[5 << 19], 7);
}

#[test]
fn threads_hand_blocks_to_each_other() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Box<[u8]>>>();
    let producer = std::thread::spawn(move || {
        for round in 0..200u32 {
            let batch: Vec<Box<[u8]>> = (0..100)
                .map(|i| vec![(round + i) as u8; (i * 13 % 2000 + 1) as usize].into_boxed_slice())
                .collect();
            tx.send(batch).unwrap();
        }
    });
    let mut n = 0;
    for batch in rx {
        for (i, b) in batch.iter().enumerate() {
            assert!(b.iter().all(|&x| x == b[0]));
            assert_eq!(b.len(), i * 13 % 2000 + 1);
        }
        n += batch.len();
    }
    producer.join().unwrap();
    assert_eq!(n, 20_000);
    let s = hakmem::stats();
    assert!(
        s.classes.sum(0..hakmem::NCLASSES, |c| c.remote_frees) > 0,
        "consumer freed producer's blocks"
    );
}
