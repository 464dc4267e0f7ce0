//! `tollgate plan`: the budget planner, in words.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tollgate_core::Rate;
use tollgate_core::plan::{TaskGroup, plan};

/// Arguments of `tollgate plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A limit of the budget, like `20/s`, `50/60s`, `50/min` or `50 per 60s`.
    /// Repeat for several limits on one key; the tightest sets the pace.
    #[arg(long = "limit", value_name = "RATE", required = true, value_parser = super::rate)]
    limits: Vec<Rate>,
    /// How many recurring requests (e.g. one per channel).
    #[arg(long, value_name = "N")]
    tasks: u32,
    /// How often each request is wanted, like `1s` or `5min`.
    #[arg(long, value_name = "PERIOD", value_parser = super::duration)]
    every: Duration,
    /// What the requests are, for the report.
    #[arg(long, default_value = "tasks")]
    name: String,
    /// Also print when each request first runs.
    #[arg(long)]
    offsets: bool,
}

/// Prints the plan and its verdict.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let groups = [TaskGroup::new(&args.name, args.tasks, args.every)];
    let plan = plan(&args.limits, &groups).context("cannot plan this schedule")?;
    print!("{}", plan.describe());
    if args.offsets {
        for group in &plan.groups {
            println!(
                "\n{} (offset from the start, then every {:?}):",
                group.name, group.every
            );
            for (i, offset) in group.offsets.iter().enumerate() {
                println!("  #{i:<5} {:>10.3}s", offset.as_secs_f64());
            }
        }
    }
    Ok(())
}
