//! warden's own health over a soak, sampled on a thread of its own while faults come and
//! go: its RSS, heap in use, CPU, open fds, threads and store size every few seconds, the time its API
//! takes to answer, and what its probes measured. Over the run each gauge gets a slope with
//! a confidence interval (a leak is a rise beyond the noise); the API's and the probes'
//! latencies go into one HDR histogram per window (an hour, or a quarter of a shorter run),
//! so the last window can be held against the first (degradation).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Runs shorter than this get no leak verdict.
pub const MIN_JUDGED: Duration = Duration::from_secs(600);
/// Windows with fewer probe samples than this get no degradation verdict.
pub const MIN_PROBE_SAMPLES: u64 = 1000;

/// One sample of warden itself.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the soak began.
    pub t: f64,
    pub rss_kib: u64,
    /// The heap allocated and not freed (`warden_heap_allocated_bytes` on `/metrics`), when
    /// the node says it: a leak rises here, where RSS also holds what the allocator keeps.
    pub heap_kib: Option<u64>,
    pub fds: u64,
    pub threads: u64,
    /// Share of one CPU since the sample before, in percent.
    pub cpu_pct: f64,
    pub store_bytes: u64,
}

/// A gauge's trend: least-squares slope per hour with its 95 % interval, after the
/// warm-up (the first tenth of the samples) is left out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    pub per_hour: f64,
    pub low: f64,
    pub high: f64,
    /// Whether it rises beyond the noise: the whole interval above zero, by more than
    /// `material` per hour.
    pub rising: bool,
}

/// Latencies in one window of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    pub api: Percentiles,
    pub probes: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub n: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// What the watch found.
#[derive(Debug, Clone, Serialize)]
pub struct NodeHealth {
    pub every_s: f64,
    pub samples: Vec<Sample>,
    pub rss_kib: Option<Trend>,
    pub heap_kib: Option<Trend>,
    pub fds: Option<Trend>,
    pub threads: Option<Trend>,
    pub store_bytes: Option<Trend>,
    pub windows: Vec<Window>,
    /// The verdicts, in words: a leak per gauge that rises, and the last window's probe
    /// p99 against the first's (within 10 %).
    pub leak: String,
    pub degradation: String,
    /// Whether either verdict is a failure.
    pub failed: bool,
}

/// A window's start and end (seconds) and its latencies.
type Timed = (f64, f64, Hists);

struct Hists {
    api: Histogram<u64>,
    probes: Histogram<u64>,
}

impl Hists {
    /// Microseconds, up to 10 minutes, 3 significant digits.
    fn new() -> Result<Self, hdrhistogram::CreationError> {
        let h = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
        Ok(Self { api: h()?, probes: h()? })
    }
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |q: f64| Some(h.median_equivalent(h.value_at_quantile(q)) as f64 / 1000.0);
    Percentiles { n: h.len(), p50_ms: ms(0.5), p99_ms: ms(0.99) }
}

/// The sampling thread; [`Watch::finish`] stops it and judges.
pub struct Watch {
    stop: Arc<AtomicBool>,
    /// No fault in progress: the probes' latencies are the node's own, not a fault's.
    quiet: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<Sample>, Vec<Timed>)>,
    every: Duration,
}

impl Watch {
    /// Samples warden (`pid`, API at `base`, store under `data`) every `every`; latency
    /// windows are `window` long.
    pub fn start(pid: u32, base: String, data: PathBuf, every: Duration, window: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let quiet = Arc::new(AtomicBool::new(true));
        let between_faults = quiet.clone();
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .unwrap_or_else(|_| reqwest::blocking::Client::new());
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut windows: Vec<Timed> = Vec::new();
            let mut last_cpu: Option<(f64, u64)> = None;
            let ticks = procfs::ticks_per_second() as f64;
            while !flag.load(Ordering::SeqCst) {
                let t = started.elapsed().as_secs_f64();
                let w = (t / window.as_secs_f64()).floor();
                if windows.last().is_none_or(|(from, _, _)| *from < w * window.as_secs_f64())
                    && let Ok(h) = Hists::new()
                {
                    windows.push((w * window.as_secs_f64(), (w + 1.0) * window.as_secs_f64(), h));
                }
                let asked = Instant::now();
                let ok = client.get(format!("{base}/api/status")).send().is_ok_and(|r| r.status().is_success());
                // An API that did not answer counts as its timeout, not as nothing.
                let api_us = if ok { asked.elapsed().as_micros() as u64 } else { 5_000_000 };
                let probes: Vec<u64> = client
                    .get(format!("{base}/api/guardian/probes"))
                    .send()
                    .ok()
                    .and_then(|r| r.json::<serde_json::Value>().ok())
                    .and_then(|v| v["probes"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| p["last_result"]["latency_ms"].as_f64())
                    .map(|ms| (ms * 1000.0) as u64)
                    .collect();
                let quiet_now = between_faults.load(Ordering::SeqCst);
                if let Some((_, _, h)) = windows.last_mut() {
                    let _ = h.api.record(api_us.clamp(1, 600_000_000));
                    for us in probes.into_iter().filter(|_| quiet_now) {
                        let _ = h.probes.record(us.clamp(1, 600_000_000));
                    }
                }
                if let Some(mut s) = sample(pid, t, &data, ticks, &mut last_cpu) {
                    s.heap_kib = heap_kib(&client, &base);
                    samples.push(s);
                }
                let until = Instant::now() + every;
                while Instant::now() < until && !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            (samples, windows)
        });
        Self { stop, quiet, handle, every }
    }

    /// Says whether a fault is in progress: probe latencies are kept only between faults.
    pub fn fault_in_progress(&self, yes: bool) {
        self.quiet.store(!yes, Ordering::SeqCst);
    }

    pub fn finish(self) -> NodeHealth {
        self.stop.store(true, Ordering::SeqCst);
        let (samples, windows) = self.handle.join().unwrap_or_default();
        judge(samples, windows, self.every)
    }
}

fn sample(pid: u32, t: f64, data: &std::path::Path, ticks: f64, last: &mut Option<(f64, u64)>) -> Option<Sample> {
    let p = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let status = p.status().ok()?;
    let stat = p.stat().ok()?;
    let cpu = stat.utime + stat.stime;
    let cpu_pct = match *last {
        Some((t0, c0)) if t > t0 => (cpu.saturating_sub(c0) as f64 / ticks) / (t - t0) * 100.0,
        _ => 0.0,
    };
    *last = Some((t, cpu));
    Some(Sample {
        t,
        rss_kib: status.vmrss?,
        heap_kib: None,
        fds: p.fd_count().ok()? as u64,
        threads: stat.num_threads as u64,
        cpu_pct,
        store_bytes: crate::procs::tree_disk_bytes(&data.join("store")),
    })
}

/// The node's heap in use, from its `/metrics`.
fn heap_kib(client: &reqwest::blocking::Client, base: &str) -> Option<u64> {
    let text = client.get(format!("{base}/metrics")).send().ok()?.text().ok()?;
    let line = text.lines().find(|l| l.starts_with("warden_heap_allocated_bytes "))?;
    let bytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(bytes as u64 / 1024)
}

/// Least-squares slope of `ys` over `xs` (seconds), per hour, with its 95 % interval;
/// `None` with fewer than 4 points or no spread in time.
pub fn trend(xs: &[f64], ys: &[f64], material: f64) -> Option<Trend> {
    let n = xs.len();
    if n < 4 || ys.len() != n {
        return None;
    }
    let nf = n as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / nf, ys.iter().sum::<f64>() / nf);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / sxx;
    let resid: f64 = xs.iter().zip(ys).map(|(x, y)| (y - (my + slope * (x - mx))).powi(2)).sum();
    let se = (resid / (nf - 2.0) / sxx).sqrt();
    // 1.96: the normal's 97.5 % point; with fewer than 30 samples the t value is larger,
    // and the interval is widened to it roughly.
    let z = if n >= 30 { 1.96 } else { 2.0 + 4.0 / nf };
    let per_hour = slope * 3600.0;
    let (low, high) = ((slope - z * se) * 3600.0, (slope + z * se) * 3600.0);
    Some(Trend { per_hour, low, high, rising: low > 0.0 && per_hour > material })
}

fn judge(samples: Vec<Sample>, windows: Vec<Timed>, every: Duration) -> NodeHealth {
    let warm = samples.len() / 10;
    let kept = &samples[warm.min(samples.len())..];
    let xs: Vec<f64> = kept.iter().map(|s| s.t).collect();
    let col = |f: fn(&Sample) -> u64| kept.iter().map(|s| f(s) as f64).collect::<Vec<f64>>();
    // What counts as a material rise per hour: 1 % of the mean, and at least a little.
    let material = |ys: &[f64], floor: f64| (ys.iter().sum::<f64>() / ys.len().max(1) as f64 * 0.01).max(floor);
    let rss = col(|s| s.rss_kib);
    let fds = col(|s| s.fds);
    let threads = col(|s| s.threads);
    let store = col(|s| s.store_bytes);
    let rss_kib = trend(&xs, &rss, material(&rss, 64.0));
    // The heap in use, where every sample has it (a node that does not export it: RSS only).
    let heap: Option<Vec<f64>> = kept.iter().map(|s| s.heap_kib.map(|h| h as f64)).collect();
    let heap_kib = heap.as_ref().and_then(|h| trend(&xs, h, material(h, 64.0)));
    let fds_t = trend(&xs, &fds, material(&fds, 1.0));
    let threads_t = trend(&xs, &threads, material(&threads, 1.0));
    // The store grows by design (incidents, runs, the audit trail): reported, not judged.
    let store_t = trend(&xs, &store, f64::INFINITY);
    let memory = if heap_kib.is_some() { ("heap in use", &heap_kib) } else { ("RSS", &rss_kib) };
    let rising: Vec<&str> = [memory, ("open fds", &fds_t), ("threads", &threads_t)]
        .into_iter()
        .filter(|(_, t)| t.as_ref().is_some_and(|t| t.rising))
        .map(|(n, _)| n)
        .collect();
    // A run of minutes shows warden's warm-up (caches, the store's first files), not a leak.
    let long_enough = samples.last().is_some_and(|s| s.t >= MIN_JUDGED.as_secs_f64());
    let rising = if long_enough { rising } else { Vec::new() };
    // RSS also holds what the allocator keeps after a free: with the heap counted, a rise
    // of RSS alone is said, not called a leak.
    let rss_alone = match (&heap_kib, &rss_kib) {
        (Some(h), Some(r)) if long_enough && r.rising && !h.rising => format!(
            "; RSS rises {:.0} KiB/h while the heap in use does not ({:+.0} KiB/h): memory the allocator keeps",
            r.per_hour, h.per_hour
        ),
        _ => String::new(),
    };
    let leak = match (rss_kib.is_some() && long_enough, rising.is_empty()) {
        (false, _) => format!("not judged: fewer than 4 samples or a run under {} minutes", MIN_JUDGED.as_secs() / 60),
        (true, true) => format!("none: {}, open fds and threads do not rise beyond the noise{rss_alone}", memory.0),
        (true, false) => format!("rising beyond the noise: {}{rss_alone}", rising.join(", ")),
    };
    let windows: Vec<Window> = windows
        .into_iter()
        .map(|(from_s, to_s, h)| Window { from_s, to_s, api: percentiles(&h.api), probes: percentiles(&h.probes) })
        .collect();
    // The last window may be cut short by the end of the run: one covered less than half
    // gives way to the one before it.
    let end = samples.last().map_or(0.0, |s| s.t);
    let last_full = windows.iter().rev().find(|w| end.min(w.to_s) - w.from_s >= (w.to_s - w.from_s) / 2.0);
    let (degradation, degraded) = match (windows.first(), last_full) {
        // A p99 of a few hundred checks is their few slowest: one busy moment of the machine.
        (Some(a), Some(b)) if a.probes.n.min(b.probes.n) < MIN_PROBE_SAMPLES => (
            format!(
                "not judged: {} and {} probe samples in the first and last windows (at least {MIN_PROBE_SAMPLES} each)",
                a.probes.n, b.probes.n
            ),
            false,
        ),
        (Some(a), Some(b)) if !std::ptr::eq(a, b) => match (a.probes.p99_ms, b.probes.p99_ms) {
            (Some(first), Some(last)) => {
                let change = (last - first) / first.max(0.001) * 100.0;
                // Probe latencies of a few tenths of a millisecond move by more than 10 %
                // with the machine's load alone: a change under 1 ms is within the noise.
                let worse = change > 10.0 && last - first > 1.0;
                (
                    format!(
                        "probe p99 {first:.2} ms in the first window, {last:.2} ms in the last ({change:+.0} %): {}",
                        if worse { "degraded" } else { "within 10 % (or 1 ms)" }
                    ),
                    worse,
                )
            }
            _ => ("not judged: no probe latencies".to_string(), false),
        },
        _ => ("not judged: the run was shorter than two windows".to_string(), false),
    };
    NodeHealth {
        every_s: every.as_secs_f64(),
        failed: !rising.is_empty() || degraded,
        samples,
        rss_kib,
        heap_kib,
        fds: fds_t,
        threads: threads_t,
        store_bytes: store_t,
        windows,
        leak,
        degradation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_steady_rise_is_rising_and_noise_around_a_level_is_not() {
        let xs: Vec<f64> = (0..40).map(|i| f64::from(i) * 90.0).collect();
        let rising: Vec<f64> = xs.iter().map(|x| 10_000.0 + x / 3.6).collect();
        let t = trend(&xs, &rising, 50.0).expect("trend");
        assert!((t.per_hour - 1000.0).abs() < 1e-6 && t.rising, "{t:?}");
        let flat: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 10_000.0 } else { 10_040.0 }).collect();
        let t = trend(&xs, &flat, 50.0).expect("trend");
        assert!(!t.rising && t.low < 0.0 && t.high > 0.0, "noise straddles zero: {t:?}");
        assert_eq!(trend(&xs[..3], &flat[..3], 1.0), None, "too few samples");
    }

    #[test]
    fn test_the_last_window_is_judged_against_the_first() {
        let sample = |t: f64, rss: u64| Sample {
            t,
            rss_kib: rss,
            heap_kib: None,
            fds: 20,
            threads: 9,
            cpu_pct: 1.0,
            store_bytes: 0,
        };
        let samples: Vec<Sample> =
            (0..80u32).map(|i| sample(f64::from(i) * 10.0, 10_000 + u64::from(i % 2) * 8)).collect();
        let window_of = |from: f64, probe_ms: u64, n: u64| {
            let mut h = Hists::new().expect("histogram");
            for _ in 0..n {
                h.probes.record(probe_ms * 1000).expect("record");
                h.api.record(2000).expect("record");
            }
            (from, from + 100.0, h)
        };
        let window = |from: f64, probe_ms: u64| window_of(from, probe_ms, MIN_PROBE_SAMPLES);
        let few = judge(samples.clone(), vec![window(0.0, 5), window_of(100.0, 9, 200)], Duration::from_secs(10));
        assert!(!few.failed && few.degradation.starts_with("not judged"), "{}", few.degradation);
        let same = judge(samples.clone(), vec![window(0.0, 5), window(100.0, 5)], Duration::from_secs(10));
        assert!(!same.failed, "{} / {}", same.leak, same.degradation);
        let slower = judge(samples.clone(), vec![window(0.0, 5), window(100.0, 9)], Duration::from_secs(10));
        assert!(slower.failed && slower.degradation.contains("degraded"), "{}", slower.degradation);
        let one = judge(samples, vec![window(0.0, 5)], Duration::from_secs(10));
        assert!(one.degradation.starts_with("not judged"), "{}", one.degradation);
        assert!(same.leak.starts_with("none"), "{}", same.leak);
        let leaking: Vec<Sample> =
            (0..80u32).map(|i| sample(f64::from(i) * 10.0, 10_000 + u64::from(i) * 50)).collect();
        let leaked = judge(leaking.clone(), vec![], Duration::from_secs(10));
        assert!(leaked.failed && leaked.leak.contains("RSS"), "{}", leaked.leak);
        let short = judge(leaking[..30].to_vec(), vec![], Duration::from_secs(10));
        assert!(!short.failed && short.leak.starts_with("not judged"), "a 5-minute run: {}", short.leak);
        // With the heap counted, a leak is the heap rising; RSS rising alone is said.
        let kept: Vec<Sample> = leaking.iter().map(|s| Sample { heap_kib: Some(4_000), ..*s }).collect();
        let kept = judge(kept, vec![], Duration::from_secs(10));
        assert!(!kept.failed && kept.leak.contains("memory the allocator keeps"), "{}", kept.leak);
        let grown: Vec<Sample> = leaking.iter().map(|s| Sample { heap_kib: Some(s.rss_kib / 2), ..*s }).collect();
        let grown = judge(grown, vec![], Duration::from_secs(10));
        assert!(grown.failed && grown.leak.contains("heap in use"), "{}", grown.leak);
    }
}
