//! The fuzz targets of `fuzz/` on a stable toolchain, inside `cargo test`: every committed
//! corpus and regression input, the built-in seeds, then a bounded number of deterministic
//! mutations of them (bit flips, byte changes, insertions, deletions, splices, separators).
//! The target bodies are the very same code the libFuzzer binaries run
//! (`fuzz/src/targets.rs`, included below).
//!
//! - `IDEMPOTENCY_FUZZ_CASES=N`: mutations per target (default 3000);
//! - `IDEMPOTENCY_FUZZ_SEED=S`: the mutation seed (default fixed, so a failure reproduces);
//! - `IDEMPOTENCY_FUZZ_WRITE_SEEDS=1`: (re)write the built-in seeds to `fuzz/corpus/<target>/`.
//!
//! Coverage-guided fuzzing (`cargo fuzz run <target>`, see `fuzz/README.md`) finds far more;
//! this keeps the same properties checked on every CI run.

#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files under `dir`, sorted (none when it does not exist).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let b = [0_u8, 0xff, 0x7f, 0x80, 0x01, b':', b'/', b'\n'][rng.below(8)];
                v.insert(i, b);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i) + 1;
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = (rng.below(len - i) + 1).min(64);
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            5 => {
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 => v.truncate(rng.below(len + 1)),
            7 if len > 0 => {
                // A varint-ish field set to an extreme.
                let i = rng.below(len);
                let extreme: &[u8] = [&[0xff; 10][..], &[0x80; 10], &[0][..]][rng.below(3)];
                v.splice(i..(i + 1).min(len), extreme.iter().copied());
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn run_case(name: &str, what: &str, data: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| targets::run(name, data))) {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("fuzz fallback: {name}: {what} failed; input (hex): {hex}");
        std::panic::resume_unwind(panic);
    }
}

fn fuzz(name: &str) {
    let dir = fuzz_dir();
    let seeds = targets::seeds(name);
    if std::env::var_os("IDEMPOTENCY_FUZZ_WRITE_SEEDS").is_some() {
        let out = dir.join("corpus").join(name);
        std::fs::create_dir_all(&out).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
    let mut pool = seeds.clone();
    let mut replayed = 0;
    for sub in ["corpus", "regressions"] {
        for (path, bytes) in files(&dir.join(sub).join(name)) {
            run_case(name, &path.display().to_string(), &bytes);
            pool.push(bytes);
            replayed += 1;
        }
    }
    for (i, s) in seeds.iter().enumerate() {
        run_case(name, &format!("seed {i}"), s);
    }
    let cases: usize = std::env::var("IDEMPOTENCY_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("IDEMPOTENCY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1de4_907e_5c0f_fee5);
    let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
    for i in 0..cases {
        let base = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, base, &pool);
        run_case(name, &format!("mutation {i} (seed {seed})"), &input);
    }
    eprintln!(
        "fuzz fallback: {name}: {replayed} corpus/regression inputs, {} seeds, {cases} mutations",
        seeds.len()
    );
    assert!(
        replayed > 0,
        "{name}: no committed corpus in fuzz/corpus/{name}"
    );
}

#[test]
fn scenario_26_record_decoding_survives_any_bytes() {
    fuzz("record_decode");
}

#[test]
fn scenario_17_and_32_key_validation_and_derivation_survive_any_input() {
    fuzz("key_validation");
}

#[test]
fn scenario_20_file_paths_stay_in_the_store_for_any_key() {
    fuzz("file_path");
    targets::remove_scratch();
}

#[test]
fn store_url_parsing_survives_any_text() {
    fuzz("store_url");
}

/// The canonical encoder's injectivity (issue 12): with the default 3000 mutations, over
/// 30 000 pairs of values of every serde shape (up to 14 pairs per input).
#[test]
fn scenario_17_canonical_encoding_is_injective_for_any_input() {
    fuzz("canonical_injectivity");
}
