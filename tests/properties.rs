//! Property tests: the hash chain and the exactly-once state machine.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use tangaroa::crypto::Signed;
use tangaroa::kv::{Applied, Kv};
use tangaroa::protocol::log::Log;
use tangaroa::protocol::{Entry, Op, Payload, Request};

fn entry(term: u64, index: u64, client: u32, seq: u64, value: u8) -> Entry {
    let op = Op::Put {
        key: format!("k{}", value % 3),
        value: value.to_string().into(),
    };
    Entry {
        term,
        index,
        payload: Payload::Request(Signed {
            body: Request { client, seq, op },
            sig: None,
        }),
    }
}

/// Entries with non-decreasing terms, as a log holds them.
fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec((0u64..3, 0u32..4, 0u64..50, any::<u8>()), 1..40).prop_map(|raw| {
        let mut term = 1;
        raw.into_iter()
            .enumerate()
            .map(|(i, (bump, c, s, v))| {
                term += bump;
                entry(term, i as u64 + 1, c, s, v)
            })
            .collect()
    })
}

fn log_of(es: &[Entry]) -> Log {
    let mut log = Log::new("prop", true);
    for e in es {
        log.append(e.clone());
    }
    log
}

proptest! {
    #[test]
    fn equal_histories_hash_equal_and_any_change_alters_every_later_hash(es in entries(), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let a = log_of(&es);
        let b = log_of(&es);
        prop_assert_eq!(a.last_hash(), b.last_hash());
        let k = at.index(es.len());
        let mut changed = es.clone();
        let old = &es[k];
        let replacement = entry(old.term, old.index, 9, 999, v);
        prop_assume!(replacement != *old);
        changed[k] = replacement;
        let c = log_of(&changed);
        for i in 1..=es.len() as u64 {
            if i <= k as u64 {
                prop_assert_eq!(a.hash_at(i), c.hash_at(i));
            } else {
                prop_assert_ne!(a.hash_at(i), c.hash_at(i), "index {}", i);
            }
        }
    }

    #[test]
    fn truncating_and_reappending_restores_the_chain(es in entries(), at in any::<prop::sample::Index>()) {
        let full = log_of(&es);
        let mut log = log_of(&es);
        let k = at.index(es.len()) as u64 + 1;
        log.truncate_from(k);
        prop_assert_eq!(log.last_index(), k - 1);
        for e in &es[(k - 1) as usize..] {
            log.append(e.clone());
        }
        prop_assert_eq!(log.last_hash(), full.last_hash());
    }

    #[test]
    fn each_client_request_executes_at_most_once_and_in_seq_order(
        reqs in prop::collection::vec((0u32..3, 1u64..8, any::<u8>()), 1..60)
    ) {
        let mut kv = Kv::new();
        // A model: per client, the latest executed seq; the store is what those executions wrote.
        let mut latest: HashMap<u32, u64> = HashMap::new();
        let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut executed: HashMap<(u32, u64), u32> = HashMap::new();
        for (client, seq, v) in reqs {
            let op = Op::Put { key: format!("k{}", v % 3), value: v.to_string().into() };
            let req = Request { client, seq, op: op.clone() };
            let fresh = latest.get(&client).is_none_or(|&l| seq > l);
            match kv.apply(&req) {
                Applied::Executed(_) => {
                    prop_assert!(fresh, "executed client {} seq {} out of order", client, seq);
                    *executed.entry((client, seq)).or_default() += 1;
                    latest.insert(client, seq);
                    if let Op::Put { key, value } = op {
                        model.insert(key, value);
                    }
                }
                Applied::Duplicate(_) | Applied::Stale => prop_assert!(!fresh),
            }
        }
        prop_assert!(executed.values().all(|&n| n == 1));
        for (k, v) in &model {
            prop_assert_eq!(kv.get(k), Some(v.as_slice()));
        }
        prop_assert_eq!(kv.len(), model.len());
    }
}
