//! The terminal progress bar (indicatif) behind the library's [`atrest::scan::Progress`]
//! callbacks: keys/s, bytes and an ETA once the total is known (etcd's count-only range, a
//! snapshot's key count). Drawn on stderr only when it is a terminal and `--no-progress` is not
//! given, so pipes, cron jobs and CI logs get none. Shared by `scan`, `rotate` and `snapshot`.
use atrest::scan::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A progress bar counting keys (and bytes) on stderr, or nothing.
pub struct Bar {
    pb: ProgressBar,
    bytes: Arc<AtomicU64>,
    /// What is counted, e.g. "keys".
    unit: &'static str,
}

impl Bar {
    /// A bar if `wanted` (not `--no-progress`) and stderr is a terminal; otherwise a hidden one.
    pub fn new(wanted: bool, unit: &'static str) -> Self {
        let show = wanted && std::io::stderr().is_terminal();
        let pb = if show {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        } else {
            ProgressBar::hidden()
        };
        let bar = Bar {
            pb,
            bytes: Arc::new(AtomicU64::new(0)),
            unit,
        };
        bar.pb.set_style(bar.style(false));
        bar
    }

    /// Whether anything is drawn.
    pub fn is_visible(&self) -> bool {
        !self.pb.is_hidden()
    }

    /// Remove the bar (before the report is printed).
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }

    /// Print a line above the bar without garbling it.
    #[allow(dead_code)]
    pub fn println(&self, line: &str) {
        if self.is_visible() {
            self.pb.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    fn style(&self, with_total: bool) -> ProgressStyle {
        let template = if with_total {
            format!(
                "{{spinner}} {{bar:20}} {{human_pos}}/{{human_len}} {} {{per_sec}} {{bytes_read}} ETA {{eta}} {{wide_msg}}",
                self.unit
            )
        } else {
            format!(
                "{{spinner}} {{elapsed}} {{human_pos}} {} {{per_sec}} {{bytes_read}} {{wide_msg}}",
                self.unit
            )
        };
        let bytes = Arc::clone(&self.bytes);
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "bytes_read",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", HumanBytes(bytes.load(Ordering::Relaxed)));
                },
            )
            .progress_chars("=> ")
    }
}

impl Progress for Bar {
    fn set_total(&self, keys: u64) {
        // A fresh count (and ETA) for the keys, after any byte-counting phase.
        self.pb.set_style(self.style(true));
        self.pb.reset();
        self.pb.set_message("");
        self.pb.set_length(keys);
    }
    fn advance(&self, keys: u64, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.pb.inc(keys);
    }
    fn message(&self, msg: &str) {
        self.pb.set_message(msg.to_string());
    }
}

/// Opening a snapshot reads the whole file first (SHA-256 trailer, index pass): bytes, with an
/// ETA, until the key phase starts.
impl atrest::snapshot::ReadProgress for Bar {
    fn start(&self, what: &str, total_bytes: u64) {
        self.pb.set_style(
            ProgressStyle::with_template(
                "{spinner} {bar:20} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.pb.reset();
        self.pb.set_length(total_bytes);
        self.pb.set_message(what.to_string());
    }
    fn advance(&self, bytes: u64) {
        self.pb.inc(bytes);
    }
    fn finish(&self) {
        self.pb.set_position(self.pb.length().unwrap_or(0));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // Never leave a half-drawn bar behind on an early error return.
        if !self.pb.is_finished() {
            self.pb.finish_and_clear();
        }
    }
}
