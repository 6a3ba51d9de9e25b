//! Issue 19's container and flatbuffer gaps: overlapping records, local names the central
//! directory contradicts, PyTorch's million-table verifier limit, and the shapes `check`
//! rejects although PyTorch 2.15 loads them (each message says so). Every PyTorch verdict
//! is asked of PyTorch itself.

use crate::common;
use crate::malformed_flatbuffer::{Spec, Tm, V};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ptconform::check::check_bytes;
use ptconform::error::{FormatError, Rule, rules};

/// One record's bytes in the file: its name in the local header, its data as stored, and
/// the central directory's view of it.
#[derive(Clone)]
struct Entry {
    name: String,
    header_offset: u32,
    crc: u32,
    compressed: u32,
    size: u32,
    method: u16,
}

/// A stored (or deflated) zip with full control of the central directory: `records` are
/// written as local headers in order, then `directory` turns their entries into the
/// central directory's.
fn assemble(
    records: &[(String, Vec<u8>)],
    directory: impl Fn(Vec<Entry>) -> Vec<Entry>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for (name, data) in records {
        entries.push(Entry {
            name: name.clone(),
            header_offset: out.len() as u32,
            crc: crc32fast::hash(data),
            compressed: data.len() as u32,
            size: data.len() as u32,
            method: 0,
        });
        out.extend(local_header(name, data));
    }
    finish(out, &directory(entries))
}

fn local_header(name: &str, data: &[u8]) -> Vec<u8> {
    local_header_with(name, data, crc32fast::hash(data), data.len() as u32, 0)
}

fn local_header_with(name: &str, data: &[u8], crc: u32, size: u32, method: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(b"PK\x03\x04");
    h.extend(20u16.to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(method.to_le_bytes());
    h.extend([0u8; 4]);
    h.extend(crc.to_le_bytes());
    h.extend((data.len() as u32).to_le_bytes());
    h.extend(size.to_le_bytes());
    h.extend((name.len() as u16).to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(name.as_bytes());
    h.extend(data);
    h
}

fn finish(mut out: Vec<u8>, entries: &[Entry]) -> Vec<u8> {
    let cd_start = out.len();
    for e in entries {
        out.extend(b"PK\x01\x02");
        out.extend(20u16.to_le_bytes());
        out.extend(20u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(e.method.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend(e.crc.to_le_bytes());
        out.extend(e.compressed.to_le_bytes());
        out.extend(e.size.to_le_bytes());
        out.extend((e.name.len() as u16).to_le_bytes());
        out.extend([0u8; 8]);
        out.extend(0u32.to_le_bytes());
        out.extend(e.header_offset.to_le_bytes());
        out.extend(e.name.as_bytes());
    }
    let cd_len = out.len() - cd_start;
    out.extend(b"PK\x05\x06");
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((cd_len as u32).to_le_bytes());
    out.extend((cd_start as u32).to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// `corpus/tiny.pt`'s records (PyTorch-written), without the code's debug pickle (it
/// holds source ranges the code edits below would invalidate).
fn tiny_records() -> Vec<(String, Vec<u8>)> {
    let mut z =
        zip::ZipArchive::new(std::fs::File::open(common::corpus("tiny.pt")).unwrap()).unwrap();
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if !name.ends_with(".debug_pkl") {
            out.push((name, data));
        }
    }
    out
}

const CODE: &str = "archive/code/__torch__/tinymod.py";

fn with_code(edit: impl Fn(&str) -> String) -> Vec<(String, Vec<u8>)> {
    let mut r = tiny_records();
    for (name, data) in &mut r {
        if name == CODE {
            *data = edit(std::str::from_utf8(data).unwrap()).into_bytes();
        }
    }
    r
}

fn findings(bytes: &[u8]) -> Vec<FormatError> {
    check_bytes(bytes)
}

/// The finding under `rule`; its message must say PyTorch 2.15 loads the file when
/// `pytorch_loads`.
fn finding(bytes: &[u8], rule: Rule, pytorch_loads: bool) -> FormatError {
    let v = findings(bytes);
    let f = v
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {v:?}"))
        .clone();
    if pytorch_loads {
        assert!(f.message.contains("PyTorch 2.15 loads"), "{f}");
    }
    f
}

/// [`Spec::base`] with the class's source, `attrs` its attribute types (`a0`, `a1`, ...).
fn loadable(attrs: &[&str]) -> Spec {
    let mut s = Spec::base();
    let mut text = String::from("class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n");
    for (k, t) in attrs.iter().enumerate() {
        text += &format!("  a{k} : {t}\n");
    }
    s.jit_sources = Some(vec![("__torch__".into(), text)]);
    s
}

fn write_all(dir: &Path, files: &[(&str, &[u8])]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, bytes)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect()
}

/// PyTorch's verdict on each file: "loads", or "refused: MESSAGE" (`lite`: the lite
/// interpreter too, for flatbuffers).
fn pytorch_verdicts(paths: &[PathBuf], lite: bool) -> Option<Vec<String>> {
    let script = "import sys, torch\nimport torch.jit.mobile\nlite = sys.argv[1] == 'lite'\nfor p in sys.argv[2:]:\n    for load in ([torch.jit.load, torch.jit.mobile._load_for_lite_interpreter] if lite else [torch.jit.load]):\n        try:\n            load(p)\n            print('loads')\n        except Exception as e:\n            print('refused: ' + str(e).replace(chr(10), ' ')[:200])\n";
    let mut args: Vec<&std::ffi::OsStr> =
        vec![std::ffi::OsStr::new(if lite { "lite" } else { "jit" })];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let out = common::torch_script(script, &args)?;
    Some(out.lines().map(str::to_string).collect())
}

/// 40 central-directory entries naming one 64 KiB record, an entry pointing inside
/// another record's data (where a whole local header is embedded), and a local header
/// naming a record differently from the directory: PyTorch loads all three, `check`
/// flags each, and `extra --out-dir` and `roundtrip` refuse to multiply the shared record.
#[test]
fn overlapping_records_and_local_names() {
    let carrier: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    let mut records = tiny_records();
    records.push(("archive/extra/carrier".into(), carrier.clone()));
    let shared = assemble(&records, |mut e| {
        let c = e.last().unwrap().clone();
        for k in 0..40 {
            e.push(Entry {
                name: format!("archive/extra/s{k:03}"),
                ..c.clone()
            });
        }
        e
    });
    let f = finding(&shared, rules::ZIP_OVERLAP, true);
    assert!(f.message.contains("archive/extra/carrier"), "{f}");

    // The carrier's data is a local header and data of its own, which a second entry names.
    let hidden = b"hidden!".to_vec();
    let mut records = tiny_records();
    records.push((
        "archive/extra/carrier".into(),
        local_header("archive/extra/hidden", &hidden),
    ));
    let inner = assemble(&records, |mut e| {
        let c = e.last().unwrap().clone();
        e.push(Entry {
            name: "archive/extra/hidden".into(),
            header_offset: c.header_offset + 30 + c.name.len() as u32,
            crc: crc32fast::hash(&hidden),
            compressed: hidden.len() as u32,
            size: hidden.len() as u32,
            method: 0,
        });
        e
    });
    finding(&inner, rules::ZIP_OVERLAP, true);
    assert!(
        !findings(&inner)
            .iter()
            .any(|f| f.rule == rules::ZIP_LOCAL_NAME),
        "{:?}",
        findings(&inner)
    );

    let mut records = tiny_records();
    records.push(("archive/extra/evil".into(), b"payload".to_vec()));
    let renamed = assemble(&records, |mut e| {
        e.last_mut().unwrap().name = "archive/extra/good".into();
        e
    });
    let f = finding(&renamed, rules::ZIP_LOCAL_NAME, true);
    assert!(f.message.contains("archive/extra/evil"), "{f}");
    assert!(
        !findings(&renamed)
            .iter()
            .any(|f| f.rule == rules::ZIP_OVERLAP),
        "{:?}",
        findings(&renamed)
    );
    // A clean rebuild of the same records has neither finding.
    let clean = assemble(&tiny_records(), |e| e);
    assert!(findings(&clean).is_empty(), "{:?}", findings(&clean));

    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(
        dir.path(),
        &[
            ("shared.pt", &shared),
            ("inner.pt", &inner),
            ("renamed.pt", &renamed),
        ],
    );
    // The tools that would write each entry in full refuse; nothing is extracted.
    let out_dir = dir.path().join("out");
    let shared_path = paths[0].to_str().unwrap();
    let (code, _, err) =
        common::run_cli(&["extra", shared_path, "--out-dir", out_dir.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("zip-overlap"), "{err}");
    assert!(
        std::fs::read_dir(&out_dir).map_or(true, |mut d| d.next().is_none()),
        "extra wrote files"
    );
    let Err(e) = ptconform::roundtrip::roundtrip(bytes::Bytes::from(shared.clone())) else {
        panic!("roundtrip re-saved overlapping records");
    };
    assert_eq!(
        e.as_format().map(|f| f.rule),
        Some(rules::ZIP_OVERLAP),
        "{e}"
    );
    // `extra` of the renamed file writes the directory's name, as PyTorch reads it.
    let (code, _, err) = common::run_cli(&[
        "extra",
        paths[2].to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(out_dir.join("good")).unwrap(), b"payload");

    let Some(verdicts) = pytorch_verdicts(&paths, false) else {
        return;
    };
    assert_eq!(
        verdicts,
        ["loads", "loads", "loads"],
        "PyTorch 2.15 on shared / inner / renamed"
    );
}

/// A buffer of over 1,000,000 tables (1,000,000 Int ivalues, each a table) is refused by
/// PyTorch's verifier ("Malformed Flatbuffer module"), so `check` says
/// `flatbuffer-verifier`; 990,000 load, and `check` passes them. ptconform's readers stay
/// permissive (their limit grows with the buffer).
#[test]
fn a_million_flatbuffer_tables() {
    let build = |n: i64| {
        let mut s = loadable(&[]);
        for i in 0..n {
            s.push(V::Int(i));
        }
        s.build()
    };
    let over = build(1_000_000);
    let under = build(990_000);
    let f = finding(&over, rules::FLATBUFFER_VERIFIER, false);
    assert!(f.message.contains("1,000,000 tables"), "{f}");
    assert!(findings(&under).is_empty(), "{:?}", findings(&under));
    assert!(
        ptconform::flatbuffer::read_flatbuffer(&bytes::Bytes::from(over.clone()), None).is_ok()
    );

    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &[("over.ptl", &over), ("under.ptl", &under)]);
    let Some(v) = pytorch_verdicts(&paths, true) else {
        return;
    };
    assert!(
        v[0].contains("Malformed Flatbuffer module")
            && v[1].contains("Malformed Flatbuffer module"),
        "PyTorch on 1,000,000 tables: {v:?}"
    );
    assert_eq!(v[2..], ["loads", "loads"], "PyTorch on 990,000 tables");
}

/// The shapes `check` keeps rejecting although PyTorch 2.15 loads them: ptconform's
/// model cannot hold them (a self-containing list, non-UTF-8 text, negative strides) or
/// holds code only as PyTorch prints it. Each message says PyTorch 2.15 loads the file.
#[test]
fn rejected_shapes_pytorch_loads_say_so() {
    // Zip: tab indentation; an unused class deriving from itself; a deflated record that
    // inflates 10 bytes past its declared size.
    let tabs = assemble(
        &with_code(|c| {
            c.lines()
                .map(|l| {
                    let n = l.len() - l.trim_start_matches(' ').len();
                    format!("{}{}\n", "\t".repeat(n / 2), &l[n..])
                })
                .collect()
        }),
        |e| e,
    );
    let f = finding(&tabs, rules::CODE_SYNTAX, true);
    assert!(f.message.contains("indented"), "{f}");
    let selfclass = assemble(
        &with_code(|c| format!("{c}class K(__torch__.tinymod.K):\n  pass\n")),
        |e| e,
    );
    let f = finding(&selfclass, rules::CODE_SYNTAX, true);
    assert!(f.message.contains("unknown base class"), "{f}");
    let long = long_deflate();
    let f = finding(&long, rules::RECORD_SIZE, true);
    assert!(f.message.contains("inflated to"), "{f}");

    // Flatbuffers: a list containing itself, a string and a source that are not UTF-8,
    // a negative stride and a negative storage offset.
    let mut s = loadable(&["List[Any]"]);
    let i = s.ivalues.len() as u32;
    s.attr(V::List(vec![i]));
    let self_list = s.build();
    let f = finding(&self_list, rules::FLATBUFFER, true);
    assert!(f.message.contains("contains itself"), "{f}");

    let mut s = loadable(&["str"]);
    s.attr(V::Str("bad-utf8-Z"));
    let bad_str = patch(s.build(), b"bad-utf8-Z", 0xff);
    let f = finding(&bad_str, rules::FLATBUFFER_VERIFIER, true);
    assert!(f.message.contains("not UTF-8"), "{f}");

    let mut s = loadable(&[]);
    if let Some(src) = &mut s.jit_sources {
        src[0].1 += "  # bad-src-Z\n";
    }
    let bad_src = patch(s.build(), b"bad-src-Z", 0xff);
    let f = finding(&bad_src, rules::FLATBUFFER, true);
    assert!(f.message.contains("source text is not UTF-8"), "{f}");

    let tensor = |tweak: &dyn Fn(&mut Tm)| {
        let mut s = loadable(&["Tensor"]);
        s.plain_storages = true;
        let st = s.storage(64);
        let mut t = Tm::floats(st, 4);
        tweak(&mut t);
        s.attr(V::Tensor(t));
        s.build()
    };
    let neg_stride = tensor(&|t| {
        t.sizes = vec![2];
        t.strides = vec![-1];
        t.offset = 1;
    });
    let f = finding(&neg_stride, rules::FLATBUFFER, true);
    assert!(f.message.contains("negative stride -1"), "{f}");
    assert!(!f.message.contains("never have one"), "{f}");
    let neg_offset = tensor(&|t| {
        t.sizes = vec![0];
        t.offset = -1;
    });
    let f = finding(&neg_offset, rules::FLATBUFFER, true);
    assert!(f.message.contains("negative storage offset -1"), "{f}");

    let dir = tempfile::tempdir().unwrap();
    let zips = write_all(
        dir.path(),
        &[
            ("tabs.pt", &tabs),
            ("selfclass.pt", &selfclass),
            ("long.pt", &long),
        ],
    );
    let fbs = write_all(
        dir.path(),
        &[
            ("self_list.ptl", &self_list),
            ("bad_str.ptl", &bad_str),
            ("bad_src.ptl", &bad_src),
        ],
    );
    let Some(z) = pytorch_verdicts(&zips, false) else {
        return;
    };
    assert_eq!(
        z, ["loads"; 3],
        "PyTorch 2.15 on tabs / selfclass / long deflate"
    );
    let Some(f) = pytorch_verdicts(&fbs, true) else {
        return;
    };
    // The negative stride and offset are not asked here: PyTorch's verifier refuses this
    // builder's tensors even unchanged ("Malformed Flatbuffer module"); the audit's
    // crafted files with them load.
    assert_eq!(
        f, ["loads"; 6],
        "PyTorch 2.15 (jit.load, lite) on self list / bad str / bad source"
    );
}

/// `bytes` with the first byte of `marker` replaced by `to`.
fn patch(mut bytes: Vec<u8>, marker: &[u8], to: u8) -> Vec<u8> {
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker");
    bytes[at] = to;
    bytes
}

/// tiny.pt with its code deflated and declared 10 bytes shorter than it inflates to (the
/// CRC is the whole text's), after a padding comment.
fn long_deflate() -> Vec<u8> {
    let records = with_code(|c| format!("{c}# padding comment\n"));
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for (name, data) in &records {
        let crc = crc32fast::hash(data);
        let (stored, size, method) = if name == CODE {
            (deflate(data), data.len() as u32 - 10, 8)
        } else {
            (data.clone(), data.len() as u32, 0)
        };
        entries.push(Entry {
            name: name.clone(),
            header_offset: out.len() as u32,
            crc,
            compressed: stored.len() as u32,
            size,
            method,
        });
        out.extend(local_header_with(name, &stored, crc, size, method));
    }
    finish(out, &entries)
}

/// `data` as a raw deflate stream (the zip crate's, read back raw).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("x", opts).unwrap();
    w.write_all(data).unwrap();
    let z = w.finish().unwrap().into_inner();
    let mut r = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
    let mut raw = Vec::new();
    r.by_index_raw(0).unwrap().read_to_end(&mut raw).unwrap();
    raw
}
