//! `ptconform conform`: the differential campaign (corpus, generated cases, PyTorch).

use super::*;

pub(super) fn run(options: &crate::conform::Options) -> i32 {
    let started = std::time::Instant::now();
    match crate::conform::run(options) {
        Ok(summary) => {
            print!("{}", summary.table());
            for f in &summary.findings {
                println!("PyTorch finding: {}: {}: {}", f.case, f.kind, f.detail);
            }
            for f in &summary.failures {
                println!("DISAGREEMENT: {}: {}: {}", f.case, f.kind, f.detail);
            }
            println!(
                "{} disagreements, {} PyTorch findings, {:.1} s",
                summary.failures.len(),
                summary.findings.len(),
                started.elapsed().as_secs_f64()
            );
            if summary.ok() { EXIT_OK } else { EXIT_FINDING }
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}
