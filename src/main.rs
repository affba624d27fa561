//! The `myelin` binary: reads the configuration, starts a node, runs until Ctrl-C or
//! SIGTERM. Everything else lives in the library.

use myelin::config::Config;
use myelin::server::Node;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: myelin [--config FILE] [--set section.key=value]...

  --config FILE      the configuration file (default: none, built-in defaults)
  --set KEY=VALUE    override one key, e.g. --set server.listen=0.0.0.0:8008
  --help             this text

Environment: MYELIN_SERVER_NAME, MYELIN_LISTEN, MYELIN_PUBLIC_BASEURL, MYELIN_DATA_DIR,
MYELIN_METRICS_LISTEN, MYELIN_DATABASE (sqlite:PATH or postgres://...), MYELIN_LOG, RUST_LOG.";

fn parse_args() -> Result<(Option<PathBuf>, Vec<String>), String> {
    let mut config = None;
    let mut sets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config = Some(args.next().ok_or("--config needs a file")?.into()),
            "--set" => sets.push(args.next().ok_or("--set needs section.key=value")?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => {
                if let Some(v) = other.strip_prefix("--config=") {
                    config = Some(v.into());
                } else if let Some(v) = other.strip_prefix("--set=") {
                    sets.push(v.to_owned());
                } else {
                    return Err(format!("unknown argument {other:?}\n\n{USAGE}"));
                }
            }
        }
    }
    Ok((config, sets))
}

fn main() -> ExitCode {
    myelin::alloc::tune();
    let (path, sets) = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(path.as_deref(), |k| std::env::var(k).ok(), &sets) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("myelin: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let system = actix::System::new();
    let result = system.block_on(async move {
        let node = Node::start(config).await?;
        wait_for_shutdown().await;
        tracing::info!("shutting down");
        node.stop().await;
        Ok::<_, myelin::server::StartError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("myelin: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
