//! The output ledger: the job's real side effect. One CSV line per accepted record id, each
//! appended with a single `write` on an `O_APPEND` file and `fsync`ed before the idempotent
//! call completes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::data::{format_kg, ActivityRow, LedgerEntry};

/// The ledger's header line.
pub const HEADER: &str =
    "record_id,org_id,facility,period,activity,quantity,unit,factor_id,kg_co2e";

/// The output ledger, open for appending, with the record ids it held when opened.
#[derive(Debug)]
pub struct OutputLedger {
    path: PathBuf,
    file: File,
    reader: File,
    /// Bytes of the file read so far (always at a line end).
    scanned: u64,
    /// Entries known to be in the file: written by an earlier process, another worker, or
    /// this one.
    known: HashMap<String, LedgerEntry>,
}

impl OutputLedger {
    /// Opens (creating with its header if needed) the ledger at `path`, repairs a torn last
    /// line left by a crash mid-write, and reads the record ids it holds.
    pub fn open(path: &Path) -> io::Result<OutputLedger> {
        create_with_header(path)?;
        let mut file = OpenOptions::new().read(true).append(true).open(path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        // Only complete lines count. A trailing fragment is another worker's append seen
        // mid-write (reads do not wait for writes), so it is never truncated here; a torn line
        // left by a power loss needs a manual repair (see README_PIPELINE.md).
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        text.truncate(complete);
        let scanned = text.len() as u64;
        let known = parse(&text)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?
            .into_iter()
            .map(|e| (e.row.record_id.clone(), e))
            .collect();
        Ok(OutputLedger {
            path: path.to_owned(),
            reader: File::open(path)?,
            file,
            scanned,
            known,
        })
    }

    /// The entry for `record_id` if the ledger already holds it. Reads the lines appended
    /// since the last look first, so a line written by another worker that crashed before its
    /// record completed is found when this worker takes the record over.
    pub fn get(&mut self, record_id: &str) -> io::Result<Option<&LedgerEntry>> {
        self.reader.seek(SeekFrom::Start(self.scanned))?;
        let mut new = String::new();
        self.reader.read_to_string(&mut new)?;
        // Stop at the last complete line: the rest is an append still in flight.
        let complete = new.rfind('\n').map_or(0, |i| i + 1);
        new.truncate(complete);
        if !new.is_empty() {
            let entries = parse_lines(&new, false)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            for e in entries {
                self.known.insert(e.row.record_id.clone(), e);
            }
            self.scanned += complete as u64;
        }
        Ok(self.known.get(record_id))
    }

    /// Appends `entry` as one line and `fsync`s it.
    pub fn append(&mut self, entry: &LedgerEntry) -> io::Result<()> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        let r = &entry.row;
        let kg = format_kg(entry.co2e_mg, 6);
        w.write_record([
            &r.record_id,
            &r.org_id,
            &r.facility,
            &r.period,
            &r.activity,
            &r.quantity,
            &r.unit,
            &entry.factor_id,
            &kg,
        ])?;
        let line = w
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        // One write on an O_APPEND file: two workers' lines never interleave.
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.known.insert(r.record_id.clone(), entry.clone());
        Ok(())
    }

    /// The ledger's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the ledger with its header atomically: a temp file, then a hard link that fails if
/// the ledger exists, so two workers starting together never both write a header.
fn create_with_header(path: &Path) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension(format!("header.{}.tmp", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{HEADER}\n").as_bytes())?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    fs::remove_file(&tmp)?;
    match linked {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Parses ledger text (header + lines) into entries, in file order.
pub fn parse(text: &str) -> Result<Vec<LedgerEntry>, String> {
    parse_lines(text, true)
}

fn parse_lines(text: &str, has_header: bool) -> Result<Vec<LedgerEntry>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(has_header)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        let f = |i: usize| rec.get(i).unwrap_or("").to_owned();
        let mg = super::data::parse_decimal(&f(8), 6)
            .ok()
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| format!("bad kg_co2e `{}`", f(8)))?;
        out.push(LedgerEntry {
            row: ActivityRow {
                record_id: f(0),
                org_id: f(1),
                facility: f(2),
                period: f(3),
                activity: f(4),
                quantity: f(5),
                unit: f(6),
            },
            factor_id: f(7),
            co2e_mg: mg,
        });
    }
    Ok(out)
}

/// Reads and parses the ledger file at `path`.
#[allow(dead_code)] // used by tests/emissions_job.rs
pub fn read(path: &Path) -> Result<Vec<LedgerEntry>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text)
}
