//! Command-line entry point: parse, run, report errors as one line.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for reuse where glibc's malloc hands large blocks back to the
/// kernel, so every tensor candle allocates would fault its pages in afresh.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fix_thread_count();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,wgpu_core=warn,wgpu_hal=warn,naga=warn,eframe=warn,egui_wgpu=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours_wanted())
        .with_target(false)
        .init();

    // Help and version go to stdout as clap prints them; any other parse error is one line.
    let cli = match interconcept::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    match interconcept::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// candle asks for its thread count before every matrix product and, unless
/// `RAYON_NUM_THREADS` (or `CANDLE_CPU_MASK`) is set, counts the physical cores afresh by
/// reading /proc/cpuinfo each time: 17% of a UNet call of the embedded model went there.
/// Setting `RAYON_NUM_THREADS` to that same count once, here, makes the question a lookup and
/// changes nothing else; a count the user set, by either variable, is left alone.
#[expect(
    unsafe_code,
    reason = "set_var is sound here: it runs first in main, before any other thread exists"
)]
fn fix_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some()
        || std::env::var_os("CANDLE_CPU_MASK").is_some()
    {
        return;
    }
    let threads = num_cpus::get_physical().max(1);
    // SAFETY: no other thread has been started yet (see the reason above).
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
}

/// Log colours on a terminal, unless `NO_COLOR` asks for none (<https://no-color.org>).
fn colours_wanted() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_colour
}

/// A clap error on one line: what is wrong, the argument it is about, the possible values or
/// the tip, without the usage block.
fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .collect();
    if parts.is_empty() {
        "error: invalid arguments".to_string()
    } else {
        parts.join(" ")
    }
}
