//! Mutation fuzzing, on the stable toolchain, of every parser that reads outside input: botnet
//! IP lists, hash IOC lists (plain, CSV, STIX, MISP), Microsoft's CVRF documents (XML and
//! JSON), dpkg's status file, rpm package headers and signed rule bundles.
//!
//! Each target starts from real files (`../shared`) and a few written here, and for a fixed
//! time feeds the parser mutated copies (bytes flipped, inserted, deleted, duplicated, cut,
//! spliced with another seed, markup characters dropped in). A parser may refuse an input;
//! it must not panic. A panicking input is written to `fuzz-crashes/TARGET-N` and the run
//! exits 1; such inputs become regression tests beside the parser.
//!
//!   cargo run --example fuzz_parsers -- [SECONDS_PER_TARGET] [TARGET...]

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Target = (&'static str, Vec<Vec<u8>>, fn(&[u8]));

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dir_files(dir: PathBuf) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.into_iter().map(read).collect()
}

/// A small rpm header: NAME, VERSION and RELEASE strings.
fn rpm_header() -> Vec<u8> {
    let data = b"bash\x005.2.15\x003.el9\x00";
    let entries: [(u32, u32, u32); 3] = [(1000, 6, 0), (1001, 6, 5), (1002, 6, 12)];
    let mut blob = Vec::new();
    blob.extend((entries.len() as u32).to_be_bytes());
    blob.extend((data.len() as u32).to_be_bytes());
    for (tag, kind, offset) in entries {
        for value in [tag, kind, offset, 1] {
            blob.extend(value.to_be_bytes());
        }
    }
    blob.extend(data);
    blob
}

fn bundle_payload() -> Vec<u8> {
    use prost::Message;
    let files = vec![hygiene_proto::v1::BundleFile {
        name: "eicar.yar".into(),
        content: b"rule eicar { strings: $a = \"EICAR\" condition: $a }".to_vec(),
    }];
    hygiene_proto::v1::BundlePayload {
        kind: "rules".into(),
        version: hygiene_proto::bundle::version(&files),
        name: "fuzz".into(),
        files,
        ..Default::default()
    }
    .encode_to_vec()
}

fn targets() -> Vec<Target> {
    let intel = shared().join("corpus/intel");
    // IPsum's 2 MB would take most of the time per input.
    let mut ip_seeds: Vec<Vec<u8>> = dir_files(intel.join("blocklists"))
        .into_iter()
        .filter(|seed| seed.len() < 300_000)
        .collect();
    ip_seeds.push(read(
        shared().join("corpus/signature-base/iocs/c2-iocs.txt"),
    ));
    ip_seeds.push(b"first_seen,ip,note\n2026-11-01,203.0.113.9,x\n".to_vec());
    let mut hash_seeds = dir_files(intel.join("hash-iocs"));
    hash_seeds.push(b"hash,name\n44d88612fea8a8f36de82e1278abb02f,eicar\n".to_vec());
    let advisories = shared().join("advisories/msrc");
    let mut cvrf_seeds = vec![
        read(advisories.join("cvrfDocument-2024-Jan.xml")),
        read(advisories.join("json/2020-dec.json")),
    ];
    // Small documents too: most mutations of a 1.5 MB document never reach its end.
    cvrf_seeds.extend(
        cvrf_seeds
            .clone()
            .iter()
            .map(|d| d[..d.len().min(40_000)].to_vec()),
    );
    let dpkg_seeds = vec![
        std::fs::read("/var/lib/dpkg/status").unwrap_or_default(),
        b"Package: bash\nStatus: install ok installed\nVersion: 5.2-1\nArchitecture: amd64\n\n"
            .to_vec(),
    ];
    vec![
        ("ip-lists", ip_seeds, |bytes| {
            use hygiene_collector::intel::iplist::{ListFormat, Screen, parse, screen};
            for format in [ListFormat::Auto, ListFormat::Csv, ListFormat::Ndjson] {
                if let Ok((list, _)) = parse("fuzz.txt", bytes, format) {
                    let _ = screen("fuzz.txt", list, Screen::default());
                }
            }
        }),
        ("hash-iocs", hash_seeds, |bytes| {
            for name in ["fuzz.txt", "fuzz.json"] {
                let _ = hygiene_collector::intel::bundles::check_hashes(&[(
                    name.to_owned(),
                    bytes.to_vec(),
                )]);
            }
        }),
        ("cvrf", cvrf_seeds, |bytes| {
            let _ = hygiene_collector::vuln::cvrf::parse(bytes);
        }),
        ("dpkg-status", dpkg_seeds, |bytes| {
            let _ = hygiene_agent::inventory::dpkg::parse_status(&String::from_utf8_lossy(bytes));
        }),
        ("rpm-header", vec![rpm_header()], |bytes| {
            if let Ok(header) = hygiene_agent::inventory::rpm::Header::parse(bytes) {
                let _ = header.package();
            }
        }),
        ("bundle", vec![bundle_payload()], |bytes| {
            // Signed as they are: what follows the signature check is what is fuzzed.
            let pkcs8 = bundle_key();
            let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).expect("key");
            let signed = hygiene_proto::v1::SignedBundle {
                payload: bytes.to_vec(),
                signature: key.sign(bytes).as_ref().to_vec(),
            };
            let public = hygiene_proto::bundle::public_key(pkcs8).expect("public key");
            let _ = hygiene_proto::bundle::verify(&signed, &public);
        }),
    ]
}

fn bundle_key() -> &'static [u8] {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| hygiene_proto::bundle::generate_key().expect("key").0)
}

/// xorshift64*: fixed seeds, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&[u8]] = &[
    b"\0",
    b"\n",
    b"\r\n",
    b"\t",
    b",",
    b";",
    b"#",
    b"\"",
    b"'",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"<",
    b">",
    b"/",
    b"|",
    b"\xff",
    b"\xc3",
    b"0.0.0.0/0",
    b"::/0",
    b"/33",
    b"255.255.255.255",
    b"99999999999999999999",
    b"-1",
    b"<![CDATA[",
    b"&amp;",
    b"&#0;",
    b"\"Event\":",
    b"\"type\":",
    b"file:hashes.",
    b"=",
    b"\\u0000",
    b"Package: ",
    b"\n\n",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = at.min(input.len() - 1);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(64)).min(input.len());
                input.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(256)).min(input.len());
                let copy = input[at..end].to_vec();
                let to = rng.below(input.len() + 1);
                input.splice(to..to, copy);
            }
            4 => input.truncate(at),
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let byte = rng.next() as u8;
                input.insert(at, byte);
            }
        }
    }
    input
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let only: Vec<&String> = args.iter().skip(1).collect();
    // Panics are reported once per input below, not by the default hook's backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    let crashes = Path::new("fuzz-crashes");
    let mut failed = 0;
    for (name, seeds, run) in targets() {
        if !only.is_empty() && !only.iter().any(|o| o.as_str() == name) {
            continue;
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let started = Instant::now();
        let (mut runs, mut panics) = (0u64, 0u64);
        // The seeds themselves first: a real file must never panic.
        let mut queue: Vec<Vec<u8>> = seeds.clone();
        while started.elapsed() < Duration::from_secs(seconds) {
            let input = queue.pop().unwrap_or_else(|| mutate(&mut rng, &seeds));
            runs += 1;
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| run(&input))) {
                panics += 1;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                std::fs::create_dir_all(crashes).expect("fuzz-crashes directory");
                let path = crashes.join(format!("{name}-{panics}"));
                std::fs::write(&path, &input).expect("crash input written");
                eprintln!(
                    "{name}: PANIC ({message}); input kept in {}",
                    path.display()
                );
                if panics >= 5 {
                    break;
                }
            }
        }
        println!(
            "{name}: {runs} inputs in {:.1} s, {panics} panics",
            started.elapsed().as_secs_f64()
        );
        failed += usize::from(panics > 0);
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
