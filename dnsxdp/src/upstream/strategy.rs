//! Which upstream a query goes to first, and where it goes when that one fails.

use std::{
    cmp::Reverse,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use clap::ValueEnum;

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Each query to the next upstream in turn.
    RoundRobin,
    /// Queries shared in proportion to the upstreams' weights.
    Weighted,
    /// The upstream with the lowest smoothed latency; one query in 16 tries another.
    Fastest,
    /// The first upstream that is up, in the order given.
    #[default]
    Ordered,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Weighted => "weighted",
            Strategy::Fastest => "fastest",
            Strategy::Ordered => "ordered",
        }
    }
}

/// Under `fastest`, every this many queries go first to another upstream than the fastest, so
/// that one that got faster is noticed.
pub const EXPLORE_EVERY: usize = 16;

/// What the strategy knows of one upstream.
pub struct Candidate {
    pub down: bool,
    pub weight: u32,
    pub srtt: Option<Duration>,
}

pub struct Selector {
    strategy: Strategy,
    /// Queries ordered so far (round-robin's turn, fastest's exploration).
    turn: AtomicUsize,
    /// Smooth weighted round-robin's current weight of each upstream.
    current: Mutex<Vec<i64>>,
}

impl Selector {
    pub fn new(strategy: Strategy, upstreams: usize) -> Selector {
        Selector {
            strategy,
            turn: AtomicUsize::new(0),
            current: Mutex::new(vec![0; upstreams]),
        }
    }

    /// The indices of `candidates` in the order one query tries them: the strategy's order of
    /// those up (of all, when all are down), then the ones down, as a last resort.
    pub fn order(&self, candidates: &[Candidate]) -> Vec<usize> {
        let all_down = candidates.iter().all(|c| c.down);
        let (mut order, down): (Vec<usize>, Vec<usize>) =
            (0..candidates.len()).partition(|&i| all_down || !candidates[i].down);
        if order.is_empty() {
            return order;
        }
        match self.strategy {
            Strategy::Ordered => {}
            Strategy::RoundRobin => {
                let turn = self.turn.fetch_add(1, Relaxed);
                let len = order.len();
                order.rotate_left(turn % len);
            }
            Strategy::Weighted => {
                let first = self.weighted_pick(candidates, &order);
                order.sort_by_key(|&i| (i != first, Reverse(candidates[i].weight)));
            }
            Strategy::Fastest => {
                // Not measured yet counts as fastest, so that each gets measured.
                order.sort_by_key(|&i| candidates[i].srtt.unwrap_or(Duration::ZERO));
                let turn = self.turn.fetch_add(1, Relaxed);
                if order.len() > 1 && turn % EXPLORE_EVERY == EXPLORE_EVERY - 1 {
                    let other = 1 + (turn / EXPLORE_EVERY) % (order.len() - 1);
                    let explored = order.remove(other);
                    order.insert(0, explored);
                }
            }
        }
        order.extend(down);
        order
    }

    /// Smooth weighted round-robin (as nginx does it) among `among`: deterministic, and any
    /// run of as many queries as the weights add up to is split exactly by weight.
    fn weighted_pick(&self, candidates: &[Candidate], among: &[usize]) -> usize {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = among.iter().map(|&i| i64::from(candidates[i].weight)).sum();
        for &i in among {
            current[i] += i64::from(candidates[i].weight);
        }
        let best = *among
            .iter()
            .max_by_key(|&&i| (current[i], Reverse(i)))
            .expect("not empty");
        current[best] -= total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(weight: u32, srtt_ms: Option<u64>) -> Candidate {
        Candidate {
            down: false,
            weight,
            srtt: srtt_ms.map(Duration::from_millis),
        }
    }

    fn down(weight: u32) -> Candidate {
        Candidate {
            down: true,
            ..up(weight, None)
        }
    }

    fn firsts(s: &Selector, c: &[Candidate], n: usize) -> Vec<usize> {
        (0..n).map(|_| s.order(c)[0]).collect()
    }

    #[test]
    fn ordered_takes_the_first_up_and_keeps_the_down_ones_last() {
        let s = Selector::new(Strategy::Ordered, 3);
        assert_eq!(s.order(&[up(1, None), up(1, None), up(1, None)]), [0, 1, 2]);
        assert_eq!(s.order(&[down(1), up(1, None), up(1, None)]), [1, 2, 0]);
        assert_eq!(s.order(&[down(1), down(1), down(1)]), [0, 1, 2]);
        assert!(s.order(&[]).is_empty());
    }

    #[test]
    fn round_robin_rotates_over_those_up() {
        let s = Selector::new(Strategy::RoundRobin, 3);
        let c = [up(1, None), down(1), up(1, None)];
        assert_eq!(s.order(&c), [0, 2, 1]);
        assert_eq!(s.order(&c), [2, 0, 1]);
        assert_eq!(s.order(&c), [0, 2, 1]);
        let all = [up(1, None), up(1, None), up(1, None)];
        let mut counts = [0; 3];
        for first in firsts(&s, &all, 30) {
            counts[first] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn weighted_splits_exactly_by_weight() {
        let s = Selector::new(Strategy::Weighted, 3);
        let c = [up(3, None), up(1, None), up(2, None)];
        let mut counts = [0; 3];
        for first in firsts(&s, &c, 60) {
            counts[first] += 1;
        }
        assert_eq!(counts, [30, 10, 20]);
        // Interleaved rather than in runs.
        let s = Selector::new(Strategy::Weighted, 2);
        assert_eq!(firsts(&s, &[up(3, None), up(1, None)], 4), [0, 0, 1, 0]);
        assert_eq!(s.order(&[up(1, None), up(5, None)])[1], 0);
        let s = Selector::new(Strategy::Weighted, 2);
        assert_eq!(firsts(&s, &[down(9), up(1, None)], 3), [1, 1, 1]);
    }

    #[test]
    fn fastest_measures_each_then_prefers_the_quickest_and_explores() {
        let s = Selector::new(Strategy::Fastest, 3);
        assert_eq!(
            s.order(&[up(1, Some(5)), up(1, None), up(1, Some(1))]),
            [1, 2, 0]
        );
        let c = [up(1, Some(50)), up(1, Some(2)), up(1, Some(9))];
        let s = Selector::new(Strategy::Fastest, 3);
        let picks = firsts(&s, &c, 2 * EXPLORE_EVERY);
        assert_eq!(
            picks.iter().filter(|&&p| p == 1).count(),
            2 * EXPLORE_EVERY - 2
        );
        assert_eq!(picks[EXPLORE_EVERY - 1], 2);
        assert_eq!(picks[2 * EXPLORE_EVERY - 1], 0);
        assert_eq!(s.order(&c), [1, 2, 0]);
    }
}
