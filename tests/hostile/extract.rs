//! `extra --out-dir` under hostile names, planted links and signals (issue 19, parts 4, 5
//! and 7's terminal escapes): nothing is written outside the directory, nothing is left
//! half-written, and human output cannot drive the terminal while `--json` stays exact.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ptconform::zip_archive::ZipArchiveReader;

fn prefix() -> String {
    ZipArchiveReader::open(common::corpus("linear.pt"))
        .unwrap()
        .prefix()
        .to_string()
}

/// `linear.pt` with extra files `(name, bytes)` added.
fn with_extras(extras: &[(&str, &[u8])]) -> Vec<u8> {
    let p = prefix();
    let names: Vec<String> = extras
        .iter()
        .map(|(n, _)| format!("{p}/extra/{n}"))
        .collect();
    let list: Vec<(&str, &[u8])> = names
        .iter()
        .zip(extras)
        .map(|(n, (_, d))| (n.as_str(), *d))
        .collect();
    common::rebuild(&common::corpus("linear.pt"), |_, d| Some(d), &list)
}

/// Every path under `dir` (links not followed) with what it is: `f:<bytes>`, `d`, or
/// `l:<target>`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("l:{}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "d".to_string()
            } else {
                format!("f:{}", m.len())
            };
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), what);
        }
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn no_temporaries(t: &BTreeMap<PathBuf, String>) {
    for p in t.keys() {
        let n = p.file_name().unwrap().to_string_lossy();
        assert!(
            !n.starts_with(".ptconform-"),
            "temporary left behind: {p:?}"
        );
    }
}

/// Each name shape of the issue through `extra --out-dir`: the name rule decides, the same
/// as `check`'s `extra-file-name`; what passes is written under its exact name, what does
/// not is refused with nothing of it created, and nothing appears outside the directory.
#[test]
fn each_name_shape_is_written_exactly_or_refused_with_nothing_left() {
    let long = "L".repeat(4096);
    let long_component = format!("d/{}", "c".repeat(300));
    let deep = format!("{}f", "deep/".repeat(200));
    let nfd = "e\u{301}";
    let nfc = "\u{e9}";
    // (name, written?)
    let shapes: Vec<(String, bool)> = [
        ("CON", true),
        ("NUL", true),
        ("aux.txt", true),
        ("COM1", true),
        ("con.txt", true),
        ("A", true),
        ("a", true),
        (nfd, true),
        (nfc, true),
        ("ctl\x1b[31mRED\x1b[0m", true),
        ("cr\rX", true),
        ("bell\x07", true),
        ("tab\tx", true),
        ("nl\nx", true),
        ("sp ace", true),
        (deep.as_str(), true),
        ("dir", false),
        ("dir/b", true),
        ("x/y", true),
        ("x", false),
        ("trail/", false),
        ("./dot", false),
        ("m/./dot", false),
        ("../escape1", false),
        ("q/../../escape2", false),
        (long.as_str(), false),
        (long_component.as_str(), false),
        ("BADXX", false), // patched to invalid UTF-8 below
    ]
    .iter()
    .map(|(n, w)| (n.to_string(), *w))
    .collect();
    let contents: Vec<Vec<u8>> = (0..shapes.len())
        .map(|i| format!("content {i}").into_bytes())
        .collect();
    let list: Vec<(&str, &[u8])> = shapes
        .iter()
        .zip(&contents)
        .map(|((n, _), c)| (n.as_str(), c.as_slice()))
        .collect();
    let mut bytes = with_extras(&list);
    // `BADXX` -> `BAD\xff\xfe` in the local header and the central directory.
    let mut hits = 0;
    for i in 0..bytes.len() - 11 {
        if &bytes[i..i + 11] == b"extra/BADXX" {
            bytes[i + 9] = 0xff;
            bytes[i + 10] = 0xfe;
            hits += 1;
        }
    }
    assert_eq!(hits, 2);

    let sandbox = tempfile::tempdir().unwrap();
    let file = sandbox.path().join("names.pt");
    std::fs::write(&file, &bytes).unwrap();
    let out = sandbox.path().join("out");
    let before = tree(sandbox.path());
    let (code, stdout, stderr) = common::run_cli(&["extra", s(&file), "--out-dir", s(&out)]);
    assert_eq!(code, 1, "{stdout}{stderr}");

    // Outside `out/`, nothing changed.
    let after = tree(sandbox.path());
    let outside: BTreeMap<_, _> = after
        .iter()
        .filter(|(p, _)| !p.starts_with("out"))
        .collect();
    assert_eq!(outside, before.iter().collect::<BTreeMap<_, _>>());
    let inside = tree(&out);
    no_temporaries(&inside);

    for ((name, written), content) in shapes.iter().zip(&contents) {
        let at = out.join(name.trim_end_matches('/'));
        if *written {
            assert_eq!(
                std::fs::read(&at).unwrap_or_else(|e| panic!("{name:?}: {e}\n{stderr}")),
                *content,
                "{name:?}"
            );
        } else {
            assert!(
                !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_file()),
                "{name:?} was written"
            );
            assert!(stderr.contains("refusing"), "{stderr}");
        }
    }
    // The refused names left nothing: no `d/` for the long component, no `trail`, no
    // `escape*` anywhere, no U+FFFD-renamed file.
    for absent in [
        "d",
        "trail",
        "dot",
        "m",
        "escape1",
        "escape2",
        "BAD\u{fffd}\u{fffd}",
    ] {
        assert!(!out.join(absent).exists(), "{absent:?} exists: {inside:?}");
    }
    assert!(!sandbox.path().join("escape1").exists());
    assert!(out.join("x").is_dir() && out.join("dir").is_dir());
    // Each refusal is named, escaped, with its reason.
    for why in [
        "\"dir\": its name \"dir\" is both a file and the directory",
        "\"x\": its name \"x\" is both a file and the directory",
        "\"trail/\": its name has an empty path component",
        "\"./dot\": its name has a '.' component",
        "longer than 255 bytes",
        "is not UTF-8",
    ] {
        assert!(stderr.contains(why), "{why:?} missing:\n{stderr}");
    }
    assert_eq!(stderr.matches("refusing").count(), 10, "{stderr}");
    assert!(!stdout.contains('\x1b') && !stdout.contains('\r') && !stdout.contains('\x07'));
    assert!(stdout.contains("ctl\\u{1b}[31mRED"), "{stdout}");

    // `check` flags exactly the names extraction refuses: one rule.
    let (code, report, _) = common::run_cli(&["check", s(&file)]);
    assert_eq!(code, 1);
    let flagged = report
        .lines()
        .filter(|l| l.contains("extra-file-name"))
        .count();
    assert_eq!(flagged, 10, "{report}");
    for name in [
        "extra/./dot\"",
        "extra/m/./dot\"",
        "extra/trail/\"",
        "extra/dir\"",
        "extra/x\"",
    ] {
        assert!(report.contains(name), "{name:?} not flagged:\n{report}");
    }
}

/// Links planted at directories, at final names, and at every name a temporary could
/// take: nothing is created or changed outside the directory.
#[cfg(unix)]
#[test]
fn planted_links_are_never_followed() {
    use std::os::unix::fs::symlink;
    let sandbox = tempfile::tempdir().unwrap();
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("final_target"), b"original").unwrap();
    let out = sandbox.path().join("out");
    std::fs::create_dir(&out).unwrap();
    symlink("../outside", out.join("evil")).unwrap();
    symlink(&outside, out.join("sub")).unwrap();
    symlink(outside.join("final_target"), out.join("final")).unwrap();
    std::fs::create_dir(out.join("real")).unwrap();
    symlink(&outside, out.join("real/inner")).unwrap();
    let file = sandbox.path().join("links.pt");
    std::fs::write(
        &file,
        with_extras(&[
            ("evil/newdir/f", b"1"),
            ("evil/f", b"2"),
            ("final", b"3"),
            ("sub/inner", b"4"),
            ("real/inner/deeper/f", b"5"),
            ("ok/f", b"6"),
        ]),
    )
    .unwrap();
    let outside_before = tree(&outside);
    for named in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ptconform"));
        cmd.args(["extra", s(&file), "--out-dir", s(&out)]);
        if named {
            cmd.env("PTCONFORM_NAMED_TEMPORARIES", "1");
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert_eq!(tree(&outside), outside_before, "written outside: {stderr}");
        assert!(
            stderr.contains("\"evil\" is a link or a file, not a directory"),
            "{stderr}"
        );
        assert!(
            stderr.contains("\"real/inner\" is a link or a file"),
            "{stderr}"
        );
        let m = std::fs::symlink_metadata(out.join("final")).unwrap();
        assert!(m.is_file(), "the link at the final name is replaced");
        assert_eq!(std::fs::read(out.join("final")).unwrap(), b"3");
        assert_eq!(std::fs::read(out.join("ok/f")).unwrap(), b"6");
        assert!(!out.join("real/inner/deeper").exists());
        no_temporaries(&tree(&out));
        // Next round: the final name is a link again.
        std::fs::remove_file(out.join("final")).unwrap();
        symlink(outside.join("final_target"), out.join("final")).unwrap();
    }
}

/// 20,000 and 200,000 entries extract completely, with no temporaries left.
#[test]
fn many_entries_extract_completely() {
    for n in [20_000usize, 200_000] {
        let p = prefix();
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let src = std::fs::read(common::corpus("linear.pt")).unwrap();
        let mut zin = zip::ZipArchive::new(std::io::Cursor::new(src)).unwrap();
        for i in 0..zin.len() {
            let f = zin.by_index_raw(i).unwrap();
            w.raw_copy_file(f).unwrap();
        }
        for i in 0..n {
            w.start_file(format!("{p}/extra/m{}/{i:06}", i % 100), opts)
                .unwrap();
            w.write_all(i.to_string().as_bytes()).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        let sandbox = tempfile::tempdir().unwrap();
        let file = sandbox.path().join("many.pt");
        std::fs::write(&file, bytes).unwrap();
        let out = sandbox.path().join("out");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_ptconform"))
            .args(["extra", s(&file), "--out-dir", s(&out)])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let t = tree(&out);
        assert_eq!(t.values().filter(|v| v.starts_with("f:")).count(), n);
        assert_eq!(t.len(), n + 100);
        no_temporaries(&t);
        assert_eq!(std::fs::read(out.join("m7/000107")).unwrap(), b"107");
    }
}

/// Waits until `found` sees something in `dir` (polling; the child must still be
/// running, or the test cannot show anything and fails).
fn poll_until(child: &mut std::process::Child, mut found: impl FnMut() -> bool) {
    loop {
        if found() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the write finished ({status}) before it could be interrupted");
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Whether process `pid` has an unnamed (`O_TMPFILE`) file open in `dir`.
fn has_unnamed_file_in(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let dir = dir.canonicalize().unwrap();
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|t| t.starts_with(&dir) && t.to_string_lossy().ends_with("(deleted)"))
}

fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: kill with a pid this test spawned and has not reaped.
    assert_eq!(unsafe { libc_kill(child.id() as i32, 15) }, 0);
    child.wait().unwrap()
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// SIGTERM in the middle of writing a 256 MiB extra file (`extra --out-dir`) or a
/// re-saved archive (`roundtrip --out`): no temporary and no partial final file is left,
/// with the unnamed `O_TMPFILE` temporaries and with named ones (removed by the signal
/// handler). The kill comes once the temporary is seen, not after a fixed time.
#[cfg(target_os = "linux")]
#[test]
fn sigterm_mid_write_leaves_no_debris() {
    use std::os::unix::process::ExitStatusExt;
    let big: Vec<u8> = (0..256u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let sandbox = tempfile::tempdir().unwrap();
    let file = sandbox.path().join("big.pt");
    std::fs::write(&file, with_extras(&[("big.bin", &big)])).unwrap();
    drop(big);
    for named in [false, true] {
        for sub in ["extra", "roundtrip"] {
            let out = sandbox.path().join(format!("out-{sub}-{named}"));
            std::fs::create_dir(&out).unwrap();
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ptconform"));
            match sub {
                "extra" => cmd.args(["extra", s(&file), "--out-dir", s(&out)]),
                _ => cmd.args(["roundtrip", s(&file), "--out", s(&out.join("re.pt"))]),
            };
            if named {
                cmd.env("PTCONFORM_NAMED_TEMPORARIES", "1");
            }
            let mut child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            poll_until(&mut child, || {
                if named {
                    std::fs::read_dir(&out).unwrap().any(|e| {
                        e.unwrap()
                            .file_name()
                            .to_string_lossy()
                            .starts_with(".ptconform-")
                    })
                } else {
                    has_unnamed_file_in(pid, &out)
                }
            });
            let status = sigterm(&mut child);
            assert_eq!(status.signal(), Some(15), "{sub}: dies of the signal");
            let left = tree(&out);
            assert!(left.is_empty(), "{sub} (named {named}) left {left:?}");
        }
    }
}

/// Names with terminal control sequences: escaped in `inspect`, `extra` (listing and
/// `--out-dir` lines) and `check` for people, exact in `inspect --json`; both formats.
#[test]
fn control_sequences_are_escaped_for_people_and_exact_in_json() {
    let names = [
        "ctl\x1b[31mRED\x1b[0m",
        "cr\rX",
        "bell\x07",
        "nl\nx",
        "bidi\u{202e}txt",
    ];
    let extras: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, b"x".as_slice())).collect();
    let sandbox = tempfile::tempdir().unwrap();
    let pt = sandbox.path().join("ctl.pt");
    std::fs::write(&pt, with_extras(&extras)).unwrap();
    // The flatbuffer twin: `linear.ptl` with these extra files.
    let ptl = sandbox.path().join("ctl.ptl");
    let base = std::fs::read(common::corpus("linear.ptl")).unwrap();
    let mut m = ptconform::flatbuffer::read_flatbuffer(&bytes::Bytes::from(base), None).unwrap();
    m.extra_files = names
        .iter()
        .map(|n| (n.to_string(), bytes::Bytes::from_static(b"x")))
        .collect();
    let fb = ptconform::flatbuffer::write::write_flatbuffer(&m, &Default::default()).unwrap();
    std::fs::write(&ptl, fb).unwrap();
    let raw = |text: &str| text.contains(['\x1b', '\r', '\x07', '\u{202e}']);
    for file in [&pt, &ptl] {
        let out = sandbox.path().join(format!(
            "out-{}",
            file.extension().unwrap().to_str().unwrap()
        ));
        for args in [
            vec!["inspect", s(file)],
            vec!["extra", s(file)],
            vec!["extra", s(file), "--out-dir", s(&out)],
        ] {
            let (code, stdout, stderr) = common::run_cli(&args);
            assert_eq!(code, 0, "{args:?}: {stderr}");
            assert!(
                !raw(&stdout) && !raw(&stderr),
                "{args:?} printed raw:\n{stdout:?}"
            );
            assert!(
                stdout.contains("ctl\\u{1b}[31mRED\\u{1b}[0m"),
                "{args:?}: {stdout}"
            );
            assert!(
                stdout.contains("nl\\nx") && stdout.contains("cr\\rX"),
                "{stdout}"
            );
            assert!(
                !stdout.lines().any(|l| l.trim() == "x"),
                "a name split the line"
            );
        }
        for n in names {
            assert_eq!(
                std::fs::read(out.join(n)).unwrap(),
                b"x",
                "exact name {n:?}"
            );
        }
        let (code, json, _) = common::run_cli(&["inspect", "--json", s(file)]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let got: Vec<&str> = v["extra_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        for n in names {
            assert!(got.contains(&n), "--json lost {n:?}: {got:?}");
        }
    }
}
