//! What each hostile request got, counted per category: handled (the refusal a person can act on), accepted (a 2xx
//! or OK: the generator made a valid request, or the server let a bad one through), unhelpful (refused, but without
//! an OpenAI error body or with an empty message) and crashed (5xx, INTERNAL/UNKNOWN/UNAVAILABLE, a reset or a
//! closed connection where an answer was due, no answer in time, a process gone).

use std::collections::BTreeMap;

/// The outcome of one request.
#[derive(Debug)]
pub enum Verdict {
    /// Refused with an actionable answer.
    Handled,
    /// Answered as if valid.
    Accepted(String),
    /// Refused, but not in a form a person can act on.
    Unhelpful(String),
    /// A server error, a reset, a hang.
    Crashed(String),
}

/// One category's counts and the first few failures, for the report.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub tried: usize,
    pub handled: usize,
    pub accepted: usize,
    pub unhelpful: usize,
    pub crashed: usize,
    pub examples: Vec<String>,
}

/// Counts per category, in the order categories are named (their names sort HTTP before gRPC).
#[derive(Debug, Default)]
pub struct Tally(pub BTreeMap<String, Row>);

impl Tally {
    pub fn record(&mut self, category: &str, what: &str, verdict: Verdict) {
        let row = self.0.entry(category.to_string()).or_default();
        row.tried += 1;
        let failure = match verdict {
            Verdict::Handled => {
                row.handled += 1;
                None
            }
            Verdict::Accepted(m) => {
                row.accepted += 1;
                Some(format!("accepted: {m}"))
            }
            Verdict::Unhelpful(m) => {
                row.unhelpful += 1;
                Some(format!("unhelpful: {m}"))
            }
            Verdict::Crashed(m) => {
                row.crashed += 1;
                Some(format!("crashed: {m}"))
            }
        };
        if let Some(f) = failure
            && row.examples.len() < 6
        {
            let mut f = format!("{what} → {f}");
            if f.len() > 400 {
                let cut = (0..=400).rev().find(|&i| f.is_char_boundary(i)).unwrap_or(0);
                f.truncate(cut);
                f.push('…');
            }
            row.examples.push(f);
        }
    }

    pub fn total(&self) -> Row {
        let mut t = Row::default();
        for r in self.0.values() {
            t.tried += r.tried;
            t.handled += r.handled;
            t.accepted += r.accepted;
            t.unhelpful += r.unhelpful;
            t.crashed += r.crashed;
        }
        t
    }

    /// The figure, as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| category | tried | handled | accepted | unhelpful | crashed |\n|---|---:|---:|---:|---:|---:|\n",
        );
        let line = |name: &str, r: &Row| {
            format!("| {name} | {} | {} | {} | {} | {} |\n", r.tried, r.handled, r.accepted, r.unhelpful, r.crashed)
        };
        for (name, r) in &self.0 {
            out.push_str(&line(name, r));
        }
        out.push_str(&line("**total**", &self.total()));
        out
    }

    /// The recorded failures, one per line.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for (name, r) in &self.0 {
            for e in &r.examples {
                out.push_str(&format!("[{name}] {e}\n"));
            }
        }
        out
    }
}

/// A small deterministic generator (SplitMix64): the corpus is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Random bytes, between `lo` and `hi` of them.
    pub fn blob(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }
}
