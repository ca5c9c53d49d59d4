//! What the calls measured: per-phase figures, recovery, the targets, the
//! table, the JSON line and the SVG chart.

use std::fmt::Write as _;
use std::time::Duration;

use crate::WINDOW;
use crate::backend::PHASES;
use crate::clients::Outcome;

/// One call as measured: when it started (since its phase began), how long
/// it took, and how it ended.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub(crate) start: Duration,
    pub(crate) took: Duration,
    pub(crate) outcome: Outcome,
}

/// What one client got in one phase.
pub(crate) struct PhaseStats {
    pub(crate) calls: Vec<Call>,
    pub(crate) took: Duration,
    pub(crate) backend_requests: u64,
}

impl PhaseStats {
    pub(crate) fn success_rate(&self) -> f64 {
        let ok = self.calls.iter().filter(|c| c.outcome.ok).count();
        ok as f64 / self.calls.len().max(1) as f64
    }

    pub(crate) fn fallbacks(&self) -> usize {
        self.calls.iter().filter(|c| c.outcome.fallback).count()
    }

    /// Latency percentile in ms, over every call (failed ones included).
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        let mut took: Vec<Duration> = self.calls.iter().map(|c| c.took).collect();
        took.sort_unstable();
        let rank = ((p * took.len() as f64).ceil() as usize).clamp(1, took.len().max(1));
        took.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    pub(crate) fn amplification(&self) -> f64 {
        self.backend_requests as f64 / self.calls.len().max(1) as f64
    }

    /// Time from the start of this phase until the success rate is back
    /// at or above 99 % for good: the calls are ordered by start, the first
    /// window of `WINDOW` calls from which on every window passes is found,
    /// and the answer is when the last failed call before it ended (zero if
    /// none failed). `None` if the last window fails.
    pub(crate) fn recovery(&self) -> Option<Duration> {
        let mut calls = self.calls.clone();
        calls.sort_by_key(|c| c.start);
        let bad: Vec<usize> = calls.iter().map(|c| usize::from(!c.outcome.ok)).collect();
        if bad.len() < WINDOW {
            return None;
        }
        let allowed = WINDOW / 100; // ≥ 99 % of the window succeed
        let mut failures: usize = bad[bad.len() - WINDOW..].iter().sum();
        if failures > allowed {
            return None;
        }
        // Walk windows backwards while they still pass.
        let mut first = bad.len() - WINDOW;
        while first > 0 {
            failures = failures + bad[first - 1] - bad[first + WINDOW - 1];
            if failures > allowed {
                break;
            }
            first -= 1;
        }
        let last_failure = calls[..first]
            .iter()
            .filter(|c| !c.outcome.ok)
            .map(|c| c.start + c.took)
            .max();
        Some(last_failure.unwrap_or(Duration::ZERO))
    }
}

/// The table: per client and phase, then recovery per client.
pub(crate) fn table(results: &Results<'_>) {
    println!(
        "\n{:<18} {:<10} {:>6} {:>9} {:>8} {:>8} {:>7} {:>9} {:>7}",
        "client", "phase", "calls", "success", "p50 ms", "p99 ms", "ampl.", "fallback", "secs"
    );
    for (name, phases) in results {
        for (phase, stats) in PHASES.iter().zip(phases) {
            println!(
                "{:<18} {:<10} {:>6} {:>8.2}% {:>8.1} {:>8.1} {:>7.2} {:>9} {:>7.1}",
                name,
                phase.name,
                stats.calls.len(),
                stats.success_rate() * 100.0,
                stats.percentile(0.50),
                stats.percentile(0.99),
                stats.amplification(),
                stats.fallbacks(),
                stats.took.as_secs_f64()
            );
        }
    }
    println!(
        "\nrecovery: from the end of the outage until the success rate over every later \
         window of {WINDOW} calls stays ≥ 99 %\n(the end of the last failed call before that)"
    );
    for (name, phases) in results {
        let recovery = phases.last().and_then(PhaseStats::recovery);
        match recovery {
            Some(d) => println!("  {name:<18} {:>6} ms", d.as_millis()),
            None => println!("  {name:<18}  never"),
        }
    }
}

pub(crate) type Results<'a> = [(&'a str, Vec<PhaseStats>)];

fn phase<'a>(results: &'a Results<'_>, client: usize, name: &str) -> Option<&'a PhaseStats> {
    let index = PHASES.iter().position(|p| p.name == name)?;
    results.get(client)?.1.get(index)
}

/// The targets, measured (not asserted).
pub(crate) fn targets(results: &Results<'_>) {
    println!("\ntargets (measured, not asserted):");
    if let (Some(b), Some(o)) = (phase(results, 3, "brownout"), phase(results, 3, "outage")) {
        let ok = b
            .calls
            .iter()
            .chain(&o.calls)
            .filter(|c| c.outcome.ok)
            .count();
        let rate = ok as f64 / (b.calls.len() + o.calls.len()).max(1) as f64 * 100.0;
        println!("  cached fallback, brownout + outage success ≥ 99.9 %: {rate:.2} %");
    }
    for client in 1..results.len() {
        if let Some(o) = phase(results, client, "outage") {
            println!(
                "  {}, outage amplification ≤ 1.2: {:.2}",
                results[client].0,
                o.amplification()
            );
        }
    }
    if let (Some(bare), Some(hedged)) = (
        phase(results, 0, "long tail"),
        phase(results, 2, "long tail"),
    ) {
        println!(
            "  hedging, long-tail p99 ≤ 1/3 of bare ({:.1} ms): {:.1} ms = {:.2} of bare, \
             {:+.1} % backend requests vs bare",
            bare.percentile(0.99),
            hedged.percentile(0.99),
            hedged.percentile(0.99) / bare.percentile(0.99).max(f64::MIN_POSITIVE),
            (hedged.amplification() / bare.amplification().max(f64::MIN_POSITIVE) - 1.0) * 100.0
        );
    }
}

/// One JSON object: clients → phases → figures, plus `recovery_ms`.
pub(crate) fn to_json(results: &Results<'_>) -> String {
    let mut out = String::from("{\"clients\":{");
    for (c, (name, phases)) in results.iter().enumerate() {
        let _ = write!(
            out,
            "{}\"{name}\":{{\"phases\":{{",
            if c > 0 { "," } else { "" }
        );
        for (p, (phase, stats)) in PHASES.iter().zip(phases).enumerate() {
            let _ = write!(
                out,
                "{}\"{}\":{{\"calls\":{},\"success_rate\":{:.5},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"amplification\":{:.3}}}",
                if p > 0 { "," } else { "" },
                phase.name,
                stats.calls.len(),
                stats.success_rate(),
                stats.percentile(0.50),
                stats.percentile(0.99),
                stats.amplification()
            );
        }
        let recovery = phases.last().and_then(PhaseStats::recovery);
        let recovery = recovery.map_or("null".to_owned(), |d| d.as_millis().to_string());
        let _ = write!(out, "}},\"recovery_ms\":{recovery}}}");
    }
    out.push_str("}}");
    out
}

/// A small bar chart of p99 latency per phase and client (log scale).
pub(crate) fn chart(results: &Results<'_>) -> String {
    const COLORS: [&str; 4] = ["#888888", "#1f77b4", "#ff7f0e", "#2ca02c"];
    let (w, h, top, bottom, left) = (760.0, 320.0, 30.0, 50.0, 60.0);
    let plot_h = h - top - bottom;
    let group = (w - left - 20.0) / PHASES.len() as f64;
    let bar = group / (results.len() as f64 + 1.0);
    // log10 scale from 1 ms to 10 s
    let y = |v: f64| top + plot_h * (1.0 - (v.max(1.0).log10() / 4.0).clamp(0.0, 1.0));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"{left}\" y=\"18\" font-size=\"13\">p99 latency per phase (ms, log scale)</text>\n"
    );
    for (i, label) in ["1", "10", "100", "1000", "10000"].iter().enumerate() {
        let yy = top + plot_h * (1.0 - i as f64 / 4.0);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
            w - 20.0,
            left - 4.0,
            yy + 4.0
        );
    }
    for (p, phase) in PHASES.iter().enumerate() {
        let x0 = left + group * p as f64;
        for (c, (_, phases)) in results.iter().enumerate() {
            let v = phases.get(p).map_or(0.0, |st| st.percentile(0.99));
            let x = x0 + bar * (c as f64 + 0.5);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{v:.1} ms</title></rect>",
                y(v),
                bar * 0.9,
                top + plot_h - y(v),
                COLORS[c % 4]
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x0 + group / 2.0,
            h - bottom + 16.0,
            phase.name
        );
    }
    for (c, (name, _)) in results.iter().enumerate() {
        let x = left + 150.0 * c as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            h - 20.0,
            COLORS[c % 4],
            x + 14.0,
            h - 11.0
        );
    }
    s.push_str("</svg>\n");
    s
}
