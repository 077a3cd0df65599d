//! `citysensed`: command line, logging set-up and exit codes. Everything else is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use citysense::config::{Config, DEMO, EXAMPLE};
use citysense::domain::fit::{self, FitModel};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "citysensed",
    version,
    about = "Smart-city sensor gateway daemon"
)]
struct Cli {
    /// Log line format on stderr: `text` (key=value; without timestamps under the journal)
    /// or `json` (one object per line, for log shippers). Also `CITYSENSE_LOG_FORMAT`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The environment variable that sets the log format when `--log-format` is not given.
const LOG_FORMAT_ENV: &str = "CITYSENSE_LOG_FORMAT";

impl LogFormat {
    /// The flag, else `CITYSENSE_LOG_FORMAT`, else text. An unknown value in the environment
    /// is an error rather than a silent fallback: the shipper would get lines it cannot parse.
    fn choose(flag: Option<LogFormat>) -> anyhow::Result<LogFormat> {
        use clap::ValueEnum as _;
        if let Some(f) = flag {
            return Ok(f);
        }
        match std::env::var(LOG_FORMAT_ENV) {
            Ok(v) if v.trim().is_empty() => Ok(LogFormat::Text),
            Ok(v) => LogFormat::from_str(v.trim(), true).map_err(|_| {
                anyhow::anyhow!("{LOG_FORMAT_ENV}={v:?}: expected \"text\" or \"json\"")
            }),
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Err(e) => Err(anyhow::anyhow!("{LOG_FORMAT_ENV}: {e}")),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/citysense/citysense.toml")]
        config: PathBuf,
    },
    /// Check a configuration file; print every error with file, line and key.
    Validate {
        #[arg(short, long, default_value = "/etc/citysense/citysense.toml")]
        config: PathBuf,
    },
    /// Print a commented example configuration.
    GenConfig,
    /// Run the real pipeline on simulated sensors, printing windows as line protocol.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Fit a [[calibration]] rule from co-located hourly values (CSV `time,value[,rh]`) of a
    /// sensor and a reference station; prints the rule with R2, RMSE and the hours used.
    Calibrate {
        /// The sensor's hourly values (a third column, RH, for `--model linear_rh`).
        sensor: PathBuf,
        /// The reference station's hourly values at the same times.
        reference: PathBuf,
        /// "linear", "linear_rh" or "polynomial".
        #[arg(long, default_value = "linear")]
        model: String,
        /// Degree of a polynomial (1-5).
        #[arg(long, default_value_t = 2)]
        degree: usize,
        /// The rule's id.
        #[arg(long, default_value = "calibration-1")]
        id: String,
        /// The quantity calibrated.
        #[arg(long, default_value = "pm2_5")]
        quantity: String,
        /// Fewest paired hours to fit on.
        #[arg(long, default_value_t = 72)]
        min_hours: usize,
    },
    /// Look at the spool without sending anything.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Print what is queued: batches, points, oldest and newest window, bytes.
    Inspect {
        #[arg(short, long, default_value = "/etc/citysense/citysense.toml")]
        config: PathBuf,
        /// Spool directory (overrides the configuration).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let result = match cli.command {
        Command::GenConfig => {
            print!("{EXAMPLE}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => Ok(validate(&config)),
        Command::Run { config } => match Config::load_with_text(&config) {
            Ok((cfg, text)) => daemon(cfg, None, Some((config, text)), log_format),
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Demo { seconds } => Config::parse(DEMO, Path::new("<embedded demo>"))
            .map_err(|e| anyhow::anyhow!("embedded demo config: {e}"))
            .and_then(|cfg| daemon(cfg, seconds.map(Duration::from_secs), None, log_format)),
        Command::Spool {
            command: SpoolCommand::Inspect { config, dir },
        } => inspect(&config, dir),
        Command::Calibrate {
            sensor,
            reference,
            model,
            degree,
            id,
            quantity,
            min_hours,
        } => {
            let model = match model.as_str() {
                "linear" => Some(FitModel::Linear),
                "linear_rh" => Some(FitModel::LinearRh),
                "polynomial" if (1..=5).contains(&degree) => Some(FitModel::Polynomial(degree)),
                _ => None,
            };
            // Both go into the printed TOML as strings: keep them plain.
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            };
            match model {
                _ if !plain(&id) || !plain(&quantity) => {
                    eprintln!(
                        "citysensed calibrate: --id and --quantity: letters, digits, _, - or ."
                    );
                    Ok(ExitCode::from(2))
                }
                Some(m) => Ok(calibrate(&sensor, &reference, m, &id, &quantity, min_hours)),
                None => {
                    eprintln!("citysensed calibrate: --model linear, linear_rh or polynomial (--degree 1-5)");
                    Ok(ExitCode::from(2))
                }
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("citysensed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `citysensed calibrate`: see [`citysense::domain::fit`]. Exit 2 when no rule can be fit.
fn calibrate(
    sensor: &Path,
    reference: &Path,
    model: FitModel,
    id: &str,
    quantity: &str,
    min_hours: usize,
) -> ExitCode {
    let read = |p: &Path| {
        let text = citysense::fs_limits::read_text(p, 64 << 20, "a CSV file")
            .map_err(|e| format!("{}: {e}", p.display()))?;
        fit::parse_csv(&p.display().to_string(), &text).map_err(|e| e.to_string())
    };
    let result = read(sensor).and_then(|s| {
        let r = read(reference)?;
        fit::fit(&s, &r, model, min_hours).map_err(|e| e.to_string())
    });
    match result {
        Ok(f) => {
            print!("{}", f.to_toml(id, quantity));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("citysensed calibrate: {e}");
            ExitCode::from(2)
        }
    }
}

fn validate(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            for w in cfg.warnings() {
                eprintln!("{}: warning: {w}", path.display());
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s)", errors.0.len());
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    use citysense::telemetry::log_ring::RingLayer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CITYSENSE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        // One flat object per line (`timestamp`, `level`, `target`, `message`, the event's
        // fields): what Vector, Fluent Bit, Promtail and journald's JSON parsers expect.
        builder
            .json()
            .flatten_event(true)
            .finish()
            .with(RingLayer)
            .init();
        return;
    }
    let builder = builder
        .with_target(false)
        // Colour codes only on a terminal: a pipe or log file gets plain `key=value` text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The journal stamps lines itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder
            .without_time()
            .with_ansi(false)
            .finish()
            .with(RingLayer)
            .init();
    } else {
        builder.finish().with(RingLayer).init();
    }
}

/// Runs the daemon; `file` (path and text of the config) makes SIGHUP reload it.
fn daemon(
    cfg: Config,
    limit: Option<Duration>,
    file: Option<(PathBuf, String)>,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::choose(log_format)?);
    tune_malloc();
    // reqwest and our MQTT TLS config both pin ring; installing it as the process default
    // as well means no code path can hit rustls' "no provider" panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        // Installed first: SIGHUP's default action would end the process.
        let reloads = reload_requests();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal(limit).await;
            signals.cancel();
        });
        match file {
            Some((path, text)) => {
                let reloader = citysense::service::reload::Reloader {
                    path,
                    hash: citysense::config::config_hash(&text),
                    requests: reloads,
                };
                citysense::run_reloadable(cfg, shutdown, reloader).await
            }
            None => {
                drop(reloads);
                citysense::run(cfg, shutdown).await
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Large blocks (a close's payload and value buffers, a spooled batch read back, its gzip)
/// are allocated every window, each on whichever thread runs the task. glibc's default
/// raises its mmap threshold to the largest block freed, after which such blocks come from
/// per-thread arenas, stay resident after free and add up across threads: measured at 10k
/// series, RSS after a close fell from 33 to 27 MiB with a fixed threshold. A fixed one
/// keeps them mmapped, so each is returned to the kernel when freed.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets an allocator parameter; it is called before the runtime's
        // threads exist, and a failure (0) leaves glibc's default, which is merely larger.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok == 0 {
            tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused; default allocator tuning");
        }
    }
}

/// One request per SIGHUP; requests arriving during a reload are merged into one more.
/// Without a config file (the demo) they are logged and ignored.
fn reload_requests() -> tokio::sync::mpsc::Receiver<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received");
                    if tx.is_closed() {
                        tracing::warn!("reload needs a config file; SIGHUP ignored");
                    }
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot install the SIGHUP handler; no reload"),
    }
    rx
}

async fn wait_for_signal(limit: Option<Duration>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    let timer = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
        _ = timer => {}
    }
}

fn inspect(config: &Path, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => Config::load_without_files(config)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .spool
            .dir(),
    };
    let s = citysense::spool::Spool::inspect(&dir)
        .with_context(|| format!("reading spool {}", dir.display()))?;
    // Window starts, at segment granularity (see `SpoolStats`).
    let fmt_ts = |t: Option<i64>| {
        t.map(citysense::time::format_rfc3339)
            .unwrap_or_else(|| "-".into())
    };
    println!("spool:   {}", dir.display());
    println!("batches: {}", s.batches);
    println!("points:  {}", s.points);
    println!("bytes:   {}", s.bytes);
    println!("oldest:  {}", fmt_ts(s.oldest_ts));
    println!("newest:  {}", fmt_ts(s.newest_ts));
    // Each output's backlog: what it has not acknowledged, from its oldest window on.
    let outputs = citysense::spool::Spool::inspect_outputs(&dir)
        .with_context(|| format!("reading spool {}", dir.display()))?;
    for o in outputs {
        println!(
            "output {}: acked {}, backlog {} batches, {} points, oldest {}",
            o.name,
            o.acked_id,
            o.batches,
            o.points,
            fmt_ts(o.oldest_ts)
        );
    }
    Ok(ExitCode::SUCCESS)
}
