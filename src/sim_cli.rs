//! `bridgemesh sim run`: the network simulator on a scenario file.

use anyhow::Context as _;
use bridgemesh_sim::simulator::{self, Scenario};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Run a scenario (see sim/scenarios/ and docs/simulator.md); prints a summary (the same
    /// for the same seed; the wall time goes to stderr), exits 1 when an invariant was violated
    /// (the seed is printed with it).
    Run {
        scenario: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Writes the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Writes a self-contained HTML report with plots here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Multiplies arrivals and bridges (e.g. 0.01 for a quick run of a large scenario).
        #[arg(long)]
        scale: Option<f64>,
    },
}

pub fn run(args: SimArgs) -> anyhow::Result<bool> {
    match args.command {
        SimCommand::Run {
            scenario,
            seed,
            json,
            html,
            scale,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("cannot read {}", scenario.display()))?;
            let mut parsed = Scenario::from_toml(&text)?;
            if let Some(factor) = scale {
                anyhow::ensure!(factor > 0.0 && factor <= 1.0, "--scale must be in (0, 1]");
                parsed = parsed.scaled(factor);
                parsed.validate()?;
            }
            let seed = seed.unwrap_or(parsed.seed);
            let started = std::time::Instant::now();
            // Drawn only on a terminal (indicatif hides itself elsewhere), so logs stay clean.
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} simulated s, {elapsed} elapsed, about {eta} left",
                )
                .expect("a valid template"),
            );
            let report = simulator::run(parsed, seed, |now_ms, end_ms| {
                bar.set_length(end_ms / 1000);
                bar.set_position(now_ms / 1000);
            });
            bar.finish_and_clear();
            // Stdout is the report only, so one seed gives the same output byte for byte; how
            // long the run took is about this machine, not the scenario.
            print!("{}", report.summary());
            eprintln!("wall time {:.2} s", started.elapsed().as_secs_f64());
            if let Some(path) = json {
                std::fs::write(&path, report.to_json())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = html {
                std::fs::write(&path, report.to_html())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if report.violation_count > 0 {
                eprintln!("invariants violated; replay with --seed {seed}");
                return Ok(false);
            }
            Ok(true)
        }
    }
}
