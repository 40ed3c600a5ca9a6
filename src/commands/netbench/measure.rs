//! What a run measures and shows while it runs: latency histograms, the once-a-second progress
//! display, and the watchdog that fails a run whose server stopped answering.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqemu::{Error, ErrorCode};
use serde_json::{json, Value};

use super::load::Shared;
use super::ANSWER_TIMEOUT;

/// Latencies in nanoseconds, 1 ns to a minute, at three significant digits.
pub(super) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(super) fn new() -> Latencies {
        Latencies(
            Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    pub(super) fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub(super) fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns);
    }

    /// Adds another worker's figures (same bounds, so it cannot fail).
    pub(super) fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at quantile `q`, in microseconds.
    pub(super) fn us(&self, q: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let ns = if q >= 1.0 {
            self.0.max()
        } else {
            self.0.value_at_quantile(q)
        };
        ns as f64 / 1000.0
    }

    /// p50, p90, p99, p99.9 and max in microseconds (null when nothing was measured).
    pub(super) fn json(&self) -> Value {
        if self.is_empty() {
            return json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null});
        }
        let r = |q: f64| (self.us(q) * 10.0).round() / 10.0;
        json!({"p50": r(0.5), "p90": r(0.9), "p99": r(0.99), "p999": r(0.999), "max": r(1.0)})
    }

    pub(super) fn text(&self) -> String {
        if self.is_empty() {
            return "none measured".to_owned();
        }
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.us(0.5),
            self.us(0.9),
            self.us(0.99),
            self.us(0.999),
            self.us(1.0)
        )
    }
}

/// The once-a-second progress display on stderr: a bar on a terminal, a plain line otherwise,
/// nothing with `--json`.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    count: u64,
    last: (Instant, u64),
}

impl Progress {
    pub(super) fn new(json: bool, count: u64) -> Progress {
        let terminal = !json && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr_with_hz(1));
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} received {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            plain: !json && !terminal,
            count,
            last: (Instant::now(), 0),
        }
    }

    pub(super) fn tick(&mut self, shared: &Shared) {
        let received = shared.received.load(Ordering::Relaxed);
        let sent = shared.sent.load(Ordering::Relaxed);
        let (then, before) = self.last;
        let rate = (received - before.min(received)) as f64 / then.elapsed().as_secs_f64();
        self.last = (Instant::now(), received);
        if let Some(bar) = &self.bar {
            bar.set_position(received);
            bar.set_message(format!("(sent {sent}, {rate:.0} msgs/s)"));
        } else if self.plain {
            eprintln!(
                "  {received}/{} received, {sent} sent, {rate:.0} msgs/s",
                self.count
            );
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Fails a run whose server stopped answering: one timer for all of a worker's requests, pushed
/// back as answers come, instead of a timer per request (which would cost more than the request).
pub(super) struct Watchdog {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    last: Instant,
}

impl Watchdog {
    pub(super) fn new() -> Watchdog {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep(ANSWER_TIMEOUT)),
            last: Instant::now(),
        }
    }

    /// An answer came.
    pub(super) fn fed(&mut self, now: Instant) {
        self.last = now;
    }

    /// Resolves with an error once no answer has come for [`ANSWER_TIMEOUT`].
    pub(super) async fn expired(&mut self, what: &str) -> Error {
        loop {
            self.sleep.as_mut().await;
            let due = self.last + ANSWER_TIMEOUT;
            if Instant::now() >= due {
                return Error::new(
                    ErrorCode::IoTimeout,
                    format!("{what}: no answer within {} s", ANSWER_TIMEOUT.as_secs()),
                );
            }
            self.sleep.as_mut().reset(due.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_report_in_microseconds() {
        let mut l = Latencies::new();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        assert!((l.us(0.5) - 500.0).abs() < 1.0);
        assert!((l.us(1.0) - 1000.0).abs() < 1.0);
        assert_eq!(Latencies::new().json()["p50"], Value::Null);
    }
}
