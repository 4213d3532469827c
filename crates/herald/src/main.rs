use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use herald::{App, Cli, Command, Routes};
use herald_store::Store;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = herald::telemetry::init(
        cli.config.log_format,
        &herald::telemetry::TraceSettings {
            endpoint: cli.config.otlp_endpoint.clone(),
            sample_ratio: cli.config.trace_sample_ratio,
        },
    );
    // Spawned, not run in `block_on`: that future runs on the main thread, beside the runtime's
    // workers, so every accepted connection would cost a wake-up of a worker and its task would
    // be allocated in another thread's malloc arena than everything it does after.
    // The task is never cancelled (the runtime outlives this `block_on`): its only error is a
    // panic, which goes on as one.
    let result = tokio::spawn(run(cli))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {}", one_line(&e));
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown().await;
    code
}

/// The error and its causes on one line, leaving out a cause whose text its parent already
/// quoted (sqlx and redis errors repeat their I/O cause).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    let role = match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => Routes::All,
        Command::Edge => Routes::Edge,
        Command::Admin => Routes::Admin,
        Command::Migrate => {
            let store = Store::connect(&config.database_url).await?;
            store
                .migrate()
                .await
                .context("cannot migrate the database")?;
            store.close().await;
            println!("migrations applied");
            return Ok(());
        }
        Command::Openapi => {
            // A reader that stops early (`herald openapi | head`) is not an error.
            let mut out = std::io::stdout().lock();
            match std::io::Write::write_all(&mut out, herald::openapi::openapi_json().as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
            return Ok(());
        }
        Command::Tenant(command) => return herald::operator::run(&config, &command).await,
    };
    let app = App::build(&config, role).await?;
    let base = app.public_url().to_owned();
    if role != Routes::Edge {
        println!("herald admin: {base}/api/v1");
    }
    if role != Routes::Admin {
        println!("herald edge:  {base}/v1/<tenant>/channels/<channel>/events");
    }
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining connections");
        shutdown.cancel();
    });
    app.run().await
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
