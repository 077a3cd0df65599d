//! `ingest_cost`: runs one in-process feed (`citysense::loadgen::feed`) and prints what it did
//! as one JSON line. Made to run under `valgrind --tool=callgrind`, whose instruction totals of
//! runs of different sizes give the cost per message and per window close:
//! `scripts/bench-instructions.sh` does that and BENCHMARKS.md ("Size and cost on ARM") has
//! the figures.
//!
//! ```sh
//! cargo build --release --example ingest_cost
//! target/release/examples/ingest_cost --input json --sensors 1000 --interval-secs 10 --windows 2
//! ```

use std::process::ExitCode;

use citysense::loadgen::feed::{run, Input, Plan};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ingest_cost",
    about = "In-process citysense feed for instruction counts"
)]
struct Args {
    /// json | plain (esphome) | tasmota | ttn (MQTT payloads) | sds011 (serial frames)
    #[arg(long, default_value = "json")]
    input: String,
    /// Sensors (MQTT devices, or SDS011 ports).
    #[arg(long, default_value_t = 1000)]
    sensors: u64,
    /// Seconds between two messages of one sensor (divides the 60 s window).
    #[arg(long, default_value_t = 10)]
    interval_secs: u64,
    /// Whole windows of messages.
    #[arg(long, default_value_t = 1)]
    windows: u64,
    /// Also close (and encode) the last window.
    #[arg(long)]
    close_last: bool,
    /// Make the messages, ingest none: the feed's own cost, to subtract.
    #[arg(long)]
    generate_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(input) = Input::parse(&args.input) else {
        eprintln!("ingest_cost: unknown --input {:?}", args.input);
        return ExitCode::FAILURE;
    };
    let plan = Plan {
        input,
        sensors: args.sensors,
        interval_secs: args.interval_secs,
        windows: args.windows,
        close_last: args.close_last,
        generate_only: args.generate_only,
    };
    match run(&plan) {
        Ok(o) => {
            println!(
                "{{\"input\":\"{}\",\"messages\":{},\"readings\":{},\"accepted\":{},\
                 \"closes\":{},\"points\":{},\"payload_bytes\":{}}}",
                args.input, o.messages, o.readings, o.accepted, o.closes, o.points, o.payload_bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ingest_cost: {e}");
            ExitCode::FAILURE
        }
    }
}
