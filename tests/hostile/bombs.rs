//! Deflate bombs inside the 1,032:1 ceiling (issue 19): a 1.5 GB extra file and a 1.5 GB
//! code file, each from ~1.5 MB of deflate, crafted at test time. Every subcommand that
//! reads them runs as a child under a 1 GiB address-space limit and must exit cleanly with
//! `record-budget`, never be killed by a signal or misreport the allocation as corruption.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common;

/// `n` MiB of `byte`, deflated without deflating them all: one full-flushed 1 MiB
/// segment (byte-aligned, dictionary reset) repeated, then an empty final block. Returns
/// the stream and the CRC-32 of the inflated bytes.
fn bomb_stream(byte: u8, n: usize) -> (Vec<u8>, u32) {
    use flate2::{Compress, Compression, FlushCompress};
    let chunk = vec![byte; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut seg = Vec::with_capacity(1 << 16);
    c.compress_vec(&chunk, &mut seg, FlushCompress::Full)
        .unwrap();
    assert_eq!(c.total_in(), chunk.len() as u64);
    let mut tail = Vec::with_capacity(64);
    c.compress_vec(&[], &mut tail, FlushCompress::Finish)
        .unwrap();
    let mut out = Vec::with_capacity(seg.len() * n + tail.len());
    let mut crc = crc32fast::Hasher::new();
    let one = {
        let mut h = crc32fast::Hasher::new();
        h.update(&chunk);
        h
    };
    for _ in 0..n {
        out.extend_from_slice(&seg);
        crc.combine(&one);
    }
    out.extend_from_slice(&tail);
    (out, crc.finalize())
}

/// A corpus archive with `name` replaced (or added) as a deflated record whose stream is
/// `stream` (inflating to `size` bytes with CRC `crc`); the other records stay stored.
/// The zip is written by hand: no writer would deflate 1.5 GB in a debug test quickly.
fn with_bomb(src: &Path, name: &str, stream: &[u8], size: u64, crc: u32) -> Vec<u8> {
    let stored = common::rebuild(src, |n, d| (!n.ends_with(name)).then_some(d), &[]);
    let mut zin = zip::ZipArchive::new(std::io::Cursor::new(stored)).unwrap();
    let prefix = zin
        .name_for_index(0)
        .unwrap()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut entries: Vec<(String, Vec<u8>, u16, u32, u64)> = Vec::new();
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let mut d = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut d).unwrap();
        let c = crc32fast::hash(&d);
        let len = d.len() as u64;
        entries.push((f.name().unwrap().to_string(), d, 0, c, len));
    }
    entries.push((format!("{prefix}/{name}"), stream.to_vec(), 8, crc, size));
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (n, data, method, crc, size) in &entries {
        let offset = out.len() as u32;
        let header = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(&sig.to_le_bytes());
            if central {
                h.extend_from_slice(&20u16.to_le_bytes());
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // version needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&method.to_le_bytes());
            h.extend_from_slice(&[0; 4]); // time, date
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(*size as u32).to_le_bytes());
            h.extend_from_slice(&(n.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra length
            if central {
                h.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
                h.extend_from_slice(&[0; 4]); // external attributes
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(n.as_bytes());
            h
        };
        out.extend(header(0x04034b50, false));
        out.extend_from_slice(data);
        central.extend(header(0x02014b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Runs ptconform under a 1 GiB address-space limit, killed after 60 s only against hangs.
fn run_limited(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ptconform"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run ptconform");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
            // SAFETY: kill of our own child's pid.
            unsafe { libc::kill(id as i32, libc::SIGKILL) };
        }
    });
    let _ = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    watchdog.join().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn assert_budget(file: &Path, argv: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for a in argv {
        match *a {
            "FILE" => args.push(file.into()),
            "OUT" => args.push(dir.path().join("out.pt").into()),
            "OUTDIR" => args.push(dir.path().join("extra").into()),
            a => args.push(a.into()),
        }
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, text) = run_limited(&refs);
    assert_eq!(
        code,
        Some(1),
        "{argv:?}: killed or wrong exit status: {text}"
    );
    assert!(text.contains("record-budget"), "{argv:?}: {text}");
    assert!(!text.contains("corrupt"), "{argv:?}: {text}");
}

const SUBCOMMANDS: &[&[&str]] = &[
    &["check", "FILE"],
    &["inspect", "FILE"],
    &["inspect", "--json", "FILE"],
    &["dump", "FILE"],
    &["diff", "FILE", "FILE"],
    &["roundtrip", "FILE"],
    &["convert", "FILE", "OUT"],
];

#[test]
fn a_1_5_gb_extra_file_is_over_budget_everywhere() {
    let (stream, crc) = bomb_stream(0, 1536);
    let bytes = with_bomb(
        &common::corpus("tiny.pt"),
        "extra/big",
        &stream,
        1536 << 20,
        crc,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb_extra.pt");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    for argv in SUBCOMMANDS.iter().chain(
        [
            &["extra", "FILE", "big"][..],
            &["extra", "FILE", "--out-dir", "OUTDIR"],
        ]
        .iter(),
    ) {
        assert_budget(&file, argv);
    }
}

#[test]
fn a_1_5_gb_code_file_of_newlines_is_over_budget_everywhere() {
    let src = common::corpus("tiny.pt");
    let mut zin = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let code = (0..zin.len())
        .map(|i| zin.by_index(i).unwrap().name().unwrap().to_string())
        .find(|n| n.contains("/code/") && n.ends_with(".py"))
        .expect("tiny.pt has a code file");
    let rel = code.split_once('/').unwrap().1.to_string();
    let (stream, crc) = bomb_stream(b'\n', 1536);
    let bytes = with_bomb(&src, &rel, &stream, 1536 << 20, crc);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb_code.pt");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    for argv in SUBCOMMANDS {
        assert_budget(&file, argv);
    }
}

#[test]
fn a_larger_budget_is_the_users_to_give() {
    // 8 MiB of zeros in an extra file: over a 1 MiB budget, within the default.
    let (stream, crc) = bomb_stream(0, 8);
    let bytes = with_bomb(
        &common::corpus("tiny.pt"),
        "extra/big",
        &stream,
        8 << 20,
        crc,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra8m.pt");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let f = file.as_os_str();
    let (code, text) = run_limited(&[
        "check".as_ref(),
        "--max-record-bytes".as_ref(),
        "1048576".as_ref(),
        f,
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("record-budget"), "{text}");
    let (code, text) = run_limited(&["check".as_ref(), f]);
    assert_eq!(code, Some(0), "{text}");
}
