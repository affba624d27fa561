//! `myelin-load`: a load generator for Matrix homeservers. It speaks only the client-server
//! API over plain HTTP, so it measures myelin, Synapse or any other server alike.
//!
//! Each scenario prints one JSON line on stdout; a table of all of them follows on stderr.
//! See `--help` and the "Load tool" section of README.md.
//!
//! # Layout
//! The modules live in `src/bin/myelin-load/` (a crate root's modules would otherwise be
//! looked up next to it, in `src/bin/`, hence the `#[path]`s).
//! - `args`: the flags.
//! - `http`: the awc client, timeouts, and error kinds.
//! - `matrix`: the API calls (register, login, createRoom, join, send, sync).
//! - `run`: the run's state and the `register`, `create_join` and `send` scenarios.
//! - `sync`: the `send_to_sync`, `initial_sync` and `idle_sync` scenarios.
//! - `remote`: the `remote_join`, `to_remote_sync` and `from_remote_sync` scenarios (with
//!   `--remote-url`, a second server federating with the first).
//! - `report`: percentiles, the JSON lines and the table.
//! - `proc`: RSS and CPU time from `/proc`.
//! - `progress`: the one-line progress display.

#[path = "myelin-load/args.rs"]
mod args;
#[path = "myelin-load/http.rs"]
mod http;
#[path = "myelin-load/matrix.rs"]
mod matrix;
#[path = "myelin-load/proc.rs"]
mod proc;
#[path = "myelin-load/progress.rs"]
mod progress;
#[path = "myelin-load/remote.rs"]
mod remote;
#[path = "myelin-load/report.rs"]
mod report;
#[path = "myelin-load/run.rs"]
mod run;
#[path = "myelin-load/sync.rs"]
mod sync;

use args::{Args, Command, Scenario};
use rand::Rng;
use report::{round, Report};
use run::Run;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1), || random_hex("load", 6)) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => args,
        Err(msg) => {
            eprintln!("myelin-load: {msg}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let system = actix_web::rt::System::new();
    let reports = system.block_on(run(args));
    eprintln!("\n{}", report::table(&reports));
    ExitCode::SUCCESS
}

/// `tag` followed by `digits` random lowercase hex digits.
fn random_hex(tag: &str, digits: usize) -> String {
    let mut rng = rand::thread_rng();
    let hex: String = (0..digits)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect();
    format!("{tag}{hex}")
}

/// Runs the selected scenarios in order, printing each report as it is done.
async fn run(args: Args) -> Vec<Report> {
    eprintln!(
        "myelin-load: {} as {}-N: users={} joiners={} messages={} concurrency={} rounds={} \
         scenarios={}",
        args.url,
        args.prefix,
        args.users,
        args.joiners,
        args.messages,
        args.concurrency,
        args.rounds,
        args.scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    let server_pid = args.server_pid.map(|p| p.to_string());
    if let Some(pid) = &server_pid {
        if proc::sample(pid).is_none() {
            eprintln!("myelin-load: cannot read /proc/{pid}; no server RSS or CPU figures");
        }
    }
    let scenarios = args.scenarios.clone();
    let mut run = Run::new(args, random_hex("", 8));
    let mut reports = Vec::new();
    for scenario in scenarios {
        let report = match run.prepare(scenario).await {
            Err(skipped) => skipped,
            Ok(()) => {
                let server_before = server_pid.as_deref().and_then(proc::sample);
                let client_before = proc::sample("self");
                let mut report = match scenario {
                    Scenario::Register => run.register().await,
                    Scenario::CreateJoin => run.create_join().await,
                    Scenario::Send => run.send().await,
                    Scenario::SendToSync => sync::send_to_sync(&run).await,
                    Scenario::InitialSync => sync::initial_sync(&run).await,
                    Scenario::IdleSync => sync::idle_sync(&run).await,
                    Scenario::RemoteJoin => remote::remote_join(&mut run).await,
                    Scenario::ToRemoteSync => remote::to_remote_sync(&run).await,
                    Scenario::FromRemoteSync => remote::from_remote_sync(&run).await,
                };
                let server_after = server_pid.as_deref().and_then(proc::sample);
                if let (Some(b), Some(a)) = (server_before, server_after) {
                    report.extra("rss_kib", a.rss_kib as i64 - b.rss_kib as i64);
                    report.extra("rss_kib_end", a.rss_kib);
                    report.extra(
                        "cpu_seconds",
                        round(a.cpu.saturating_sub(b.cpu).as_secs_f64(), 2),
                    );
                }
                if let (Some(b), Some(a)) = (client_before, proc::sample("self")) {
                    report.extra(
                        "client_cpu_seconds",
                        round(a.cpu.saturating_sub(b.cpu).as_secs_f64(), 2),
                    );
                }
                report
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", report.json_line());
        let _ = out.flush();
        reports.push(report);
    }
    reports
}
