//! `citysense-loadgen`: publishes deterministic sensor readings to an MQTT broker at a fixed
//! rate, for benchmarks. N sensors, QoS 0 or 1, JSON / ESPHome plain / Tasmota / TTN payloads
//! (see `citysense::loadgen`). Bounded by `--seconds` and `--count`. Prints one JSON line with
//! what it sent (messages, value totals to check the store against) and the rate it achieved.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use citysense::loadgen::{message, Format, Totals};
use citysense::reading::now_ns;
use clap::Parser;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, QoS};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "citysense-loadgen",
    version,
    about = "MQTT load generator for citysense benchmarks"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Distinct sensors (series = sensors x quantities).
    #[arg(long, default_value_t = 1000)]
    sensors: u64,
    /// Messages per second over all connections.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many messages (default: no limit but time).
    #[arg(long)]
    count: Option<u64>,
    /// 0 or 1.
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// json | plain (esphome) | tasmota | ttn
    #[arg(long, default_value = "json")]
    format: String,
    /// Parallel MQTT connections (each sends every k-th message).
    #[arg(long, default_value_t = 1)]
    connections: u64,
    /// Print the daemon's `[[mqtt.subscription]]` lines for `--format` and exit.
    #[arg(long)]
    print_subscription: bool,
}

/// What one connection did.
#[derive(Default)]
struct Outcome {
    totals: Totals,
    errors: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("citysense-loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("citysense-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let format = Format::parse(&args.format).context("unknown --format")?;
    if args.print_subscription {
        print!("{}", format.subscription_toml());
        return Ok(());
    }
    if args.qos > 1 || args.connections == 0 || args.rate == 0 {
        bail!("--qos must be 0 or 1, --connections and --rate at least 1");
    }
    let qos = if args.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let limit = args.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            connection(&args, format, qos, c, limit, start).await
        }));
    }
    let (mut totals, mut errors) = (Totals::default(), 0);
    for t in tasks {
        let o = t.await.context("publisher task")??;
        totals.merge(&o.totals);
        errors += o.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{},\"errors\":{errors},\"elapsed_s\":{elapsed:.3},\"rate\":{:.0},\
         \"readings\":{},\"pm2_5_sum\":{}.{},\"pm10_sum\":{}.{}}}",
        totals.messages,
        totals.messages as f64 / elapsed,
        totals.messages * format.readings_per_message(),
        totals.pm2_5_tenths / 10,
        totals.pm2_5_tenths % 10,
        totals.pm10_tenths / 10,
        totals.pm10_tenths % 10,
    );
    if errors > 0 {
        bail!("{errors} publish errors");
    }
    Ok(())
}

/// One connection: sends messages `c, c + k, c + 2k, ...` paced to `rate / k` per second.
async fn connection(
    args: &Args,
    format: Format,
    qos: QoS,
    c: u64,
    limit: u64,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let mut opts = MqttOptions::new(
        format!("citysense-loadgen-{}-{c}", std::process::id()),
        args.host.clone(),
        args.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(1000);
    opts.set_request_channel_capacity(10_000);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    // The event loop sends what `publish` queues; it ends after our DISCONNECT went out.
    let driver = tokio::spawn(async move {
        let mut errors = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return errors,
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    eprintln!("citysense-loadgen: connection error: {e}");
                    if errors > 10 {
                        return errors;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let k = args.connections;
    let per_conn = args.rate as f64 / k as f64;
    let deadline = Duration::from_secs_f64(args.seconds);
    let mut out = Outcome::default();
    let (mut topic, mut payload) = (String::new(), String::new());
    let mut n = 0u64; // messages this connection sent
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'outer: loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let due = ((elapsed.min(deadline).as_secs_f64() * per_conn) as u64).saturating_sub(n);
        let now_ms = now_ns() / 1_000_000;
        for _ in 0..due {
            let i = c + n * k;
            if i >= limit {
                break 'outer;
            }
            message(format, args.sensors, i, now_ms, &mut topic, &mut payload);
            match client
                .publish(topic.as_str(), qos, false, payload.as_bytes().to_vec())
                .await
            {
                Ok(()) => {
                    let s = args.sensors.max(1);
                    out.totals.add(format, i % s, i / s);
                }
                Err(_) => out.errors += 1,
            }
            n += 1;
        }
        if elapsed >= deadline {
            break;
        }
    }
    client.disconnect().await.context("disconnect")?;
    out.errors += tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .context("event loop did not finish sending")?
        .context("event loop task")?;
    Ok(out)
}
