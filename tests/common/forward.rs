//! Running `forward` with real PyTorch on a reference and on a ptconform-written
//! candidate (`oracle/peer/fb_forward.py`, one process for all jobs).

use serde_json::Value;

/// Runs the jobs (see `oracle/peer/fb_forward.py` for their shape) and checks every result:
/// no candidate failed where its reference ran, every compared output is equal. Returns
/// how many comparisons ran, or `None` when PyTorch is absent (the test is skipped).
pub fn check_forward(jobs: &[Value]) -> Option<usize> {
    let python = super::torch_python()?;
    let mut child = std::process::Command::new(python)
        .arg(super::repo().join("oracle/peer/fb_forward.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start oracle/peer/fb_forward.py");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::to_string(jobs).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "fb_forward.py failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    let (mut equal, mut skipped) = (0, 0);
    for (job, res) in jobs.iter().zip(&results) {
        for (loader, r) in res.as_object().unwrap() {
            if r.get("skipped").is_some() {
                skipped += 1;
                continue;
            }
            assert!(r.get("error").is_none(), "{job} [{loader}]: {r}");
            assert!(
                r.get("crash").is_none(),
                "PyTorch crashed: {job} [{loader}]: {r}"
            );
            assert_eq!(r["equal"], true, "{job} [{loader}]: {r}");
            equal += 1;
        }
    }
    println!("forward outputs agree in {equal} runs ({skipped} skipped: reference not runnable)");
    Some(equal)
}
