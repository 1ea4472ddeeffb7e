//! The counters of a labelled family that the event path bumps for every record, kept at hand:
//! `with_label_values` hashes every label value and takes the family's lock each time, which
//! was among the daemon's top costs per file event. Labels are bounded (see `metrics.rs`), and
//! a record stream repeats the same few label sets, so a short list compared by value is enough.

use prometheus::{IntCounter, IntCounterVec};

/// Label sets remembered per family; past this, lookups go to the family (still correct).
const MAX: usize = 32;

pub struct CounterCache {
    family: IntCounterVec,
    cached: Vec<(Vec<String>, IntCounter)>,
}

impl CounterCache {
    pub fn new(family: IntCounterVec) -> Self {
        Self { family, cached: Vec::new() }
    }

    /// The counter of `labels`, as `with_label_values` would return it.
    pub fn get(&mut self, labels: &[&str]) -> &IntCounter {
        let hit =
            self.cached.iter().position(|(k, _)| k.iter().map(String::as_str).eq(labels.iter().copied()));
        let i = match hit {
            Some(i) => i,
            None => {
                let c = self.family.with_label_values(labels);
                if self.cached.len() >= MAX {
                    // Labels are bounded but can outnumber the list: the oldest goes.
                    self.cached.remove(0);
                }
                self.cached.push((labels.iter().map(|s| s.to_string()).collect(), c));
                self.cached.len() - 1
            }
        };
        &self.cached[i].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    #[test]
    fn cached_counters_are_the_family_s() {
        let family = IntCounterVec::new(Opts::new("t_total", "t"), &["a", "b"]).unwrap();
        let mut c = CounterCache::new(family.clone());
        c.get(&["x", "y"]).inc();
        c.get(&["x", "y"]).inc();
        c.get(&["x", "z"]).inc();
        assert_eq!(family.with_label_values(&["x", "y"]).get(), 2);
        assert_eq!(family.with_label_values(&["x", "z"]).get(), 1);
        // More label sets than the list holds: every one still counts in its own series.
        for i in 0..3 * MAX {
            c.get(&["n", &i.to_string()]).inc();
        }
        for i in 0..3 * MAX {
            c.get(&["n", &i.to_string()]).inc();
            assert_eq!(family.with_label_values(&["n", &i.to_string()]).get(), 2);
        }
        assert!(c.cached.len() <= MAX);
    }
}
