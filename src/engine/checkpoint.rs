//! Reading safetensors checkpoints tensor by tensor, naming the tensor in every error.
//!
//! The `safetensors` crate wants the whole file in memory and reports a truncated or
//! inconsistent file without saying which tensor is at fault. Checkpoints here are gigabytes
//! (a single-file Stable Diffusion checkpoint often carries EMA weights the program never
//! uses), so this reader parses the JSON header itself, checks every entry against the file's
//! length, then reads the file once, front to back: the bytes of every tensor go through the
//! model's hash, and only the tensors asked for are kept, converted to the compute dtype (f16
//! and bf16 checkpoints become f32). Nothing is memory-mapped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::error::{EngineError, Result};

/// Headers larger than this are refused rather than allocated (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The name, as in the file.
    pub name: String,
    /// The element type as the file spells it (`F16`, `F32`, `BF16`...).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// Start of the data, counted from the end of the header.
    pub start: u64,
    /// End of the data (exclusive).
    pub end: u64,
}

/// A safetensors file whose header has been read and checked.
#[derive(Debug, Clone)]
pub struct SafetensorsFile {
    path: PathBuf,
    /// Entries sorted by where their data starts.
    entries: Vec<TensorEntry>,
    /// Size of the length prefix and the header.
    data_start: u64,
}

/// Bytes per element of a dtype name, for the dtypes a checkpoint can hold.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// candle's dtype for a file dtype, where candle has one.
fn candle_dtype(dtype: &str) -> Option<DType> {
    Some(match dtype {
        "F64" => DType::F64,
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

impl SafetensorsFile {
    /// Opens a file and checks its header: every entry must have a known dtype, a byte range
    /// that matches its shape, and data inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| EngineError::file(format!("cannot open weights: {e}"), path))?;
        let file_len = file
            .metadata()
            .map_err(|e| EngineError::file(format!("cannot read weights: {e}"), path))?
            .len();
        let mut reader = BufReader::new(file);
        let mut prefix = [0u8; 8];
        reader.read_exact(&mut prefix).map_err(|_| {
            EngineError::file(
                format!("not a safetensors file: only {file_len} bytes, no header"),
                path,
            )
        })?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
            return Err(EngineError::file(
                format!(
                    "not a safetensors file (or truncated): header length {header_len} does not \
                     fit in the file's {file_len} bytes"
                ),
                path,
            ));
        }
        let mut header = vec![0u8; header_len as usize];
        reader
            .read_exact(&mut header)
            .map_err(|e| EngineError::file(format!("cannot read header: {e}"), path))?;
        let data_start = 8 + header_len;
        let entries = parse_header(&header, file_len - data_start, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            data_start,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All entries, in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    /// The entry of one tensor.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Reads the whole file once, feeding every byte to `hasher`, and returns the tensors that
    /// `keep` accepts, floating ones converted to `dtype`, under the names `keep` gives them.
    ///
    /// `keep` maps a file name to the name the tensor is kept under, or `None` to skip it.
    pub fn read(
        &self,
        keep: &mut dyn FnMut(&str) -> Option<String>,
        dtype: DType,
        device: &Device,
        hasher: &mut blake3::Hasher,
    ) -> Result<HashMap<String, Tensor>> {
        let io_error =
            |e: std::io::Error| EngineError::file(format!("cannot read weights: {e}"), &self.path);
        let file = File::open(&self.path).map_err(io_error)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut position = 0u64;
        let mut header = vec![0u8; self.data_start as usize];
        reader.read_exact(&mut header).map_err(io_error)?;
        hasher.update(&header);

        let mut tensors = HashMap::new();
        let mut buffer = Vec::new();
        for entry in &self.entries {
            // Gaps between tensors are legal; their bytes still count in the hash.
            if entry.start > position {
                copy_to_hasher(&mut reader, entry.start - position, hasher).map_err(io_error)?;
            }
            let len = (entry.end - entry.start) as usize;
            buffer.resize(len, 0);
            reader.read_exact(&mut buffer).map_err(|e| {
                EngineError::file(
                    format!("tensor {}: cannot read data: {e}", entry.name),
                    &self.path,
                )
            })?;
            hasher.update(&buffer);
            position = entry.end;
            let Some(kept_name) = keep(&entry.name) else {
                continue;
            };
            let tensor = self.to_tensor(entry, &buffer, dtype, device)?;
            tensors.insert(kept_name, tensor);
        }
        // Trailing bytes after the last tensor, if any.
        std::io::copy(&mut reader, &mut HashWriter(hasher)).map_err(io_error)?;
        Ok(tensors)
    }

    fn to_tensor(
        &self,
        entry: &TensorEntry,
        bytes: &[u8],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let fail =
            |what: String| EngineError::file(format!("tensor {}: {what}", entry.name), &self.path);
        let file_dtype = candle_dtype(&entry.dtype)
            .ok_or_else(|| fail(format!("element type {} is not supported", entry.dtype)))?;
        let tensor = Tensor::from_raw_buffer(bytes, file_dtype, &entry.shape, device)
            .map_err(|e| fail(e.to_string()))?;
        if file_dtype.is_float() && file_dtype != dtype {
            tensor.to_dtype(dtype).map_err(|e| fail(e.to_string()))
        } else {
            Ok(tensor)
        }
    }
}

/// Feeds `len` bytes of `reader` to the hasher.
fn copy_to_hasher(
    reader: &mut impl Read,
    len: u64,
    hasher: &mut blake3::Hasher,
) -> std::io::Result<()> {
    let copied = std::io::copy(&mut reader.take(len), &mut HashWriter(hasher))?;
    if copied < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    }
    Ok(())
}

/// Lets `std::io::copy` write into a hasher.
struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One header entry as JSON.
#[derive(serde::Deserialize)]
struct EntryJson {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Parses and checks a header; `data_len` is the number of bytes after it.
fn parse_header(header: &[u8], data_len: u64, path: &Path) -> Result<Vec<TensorEntry>> {
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| EngineError::file(format!("malformed safetensors header: {e}"), path))?;
    let mut entries = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let fail = |what: String| EngineError::file(format!("tensor {name}: {what}"), path);
        let entry: EntryJson = serde_json::from_value(value)
            .map_err(|e| fail(format!("malformed header entry ({e})")))?;
        let [start, end] = entry.data_offsets;
        let size = dtype_size(&entry.dtype)
            .ok_or_else(|| fail(format!("unknown element type {}", entry.dtype)))?;
        let elements = entry
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let expected = elements.and_then(|n| n.checked_mul(size));
        if start > end || expected != Some(end - start) {
            return Err(fail(format!(
                "header gives bytes {start}..{end} for shape {:?} of {}, which needs {} bytes \
                 (corrupt header)",
                entry.shape,
                entry.dtype,
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string())
            )));
        }
        if end > data_len {
            return Err(fail(format!(
                "data ends at byte {end} but the file holds only {data_len} bytes of data \
                 (truncated file)"
            )));
        }
        entries.push(TensorEntry {
            name,
            dtype: entry.dtype,
            shape: entry.shape,
            start,
            end,
        });
    }
    entries.sort_by_key(|e| (e.start, e.end));
    for pair in entries.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(EngineError::file(
                format!(
                    "tensor {}: data overlaps tensor {} (corrupt header)",
                    pair[1].name, pair[0].name
                ),
                path,
            ));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, tensors: &[(&str, Tensor)]) -> PathBuf {
        let path = dir.join("w.safetensors");
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }

    #[test]
    fn reads_converts_and_hashes_like_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2., 3.], &dev)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let b = Tensor::new(&[[4f32, 5.], [6., 7.]], &dev).unwrap();
        let path = write(dir.path(), &[("a", a), ("b", b)]);
        let file = SafetensorsFile::open(&path).unwrap();
        let mut hasher = blake3::Hasher::new();
        let tensors = file
            .read(
                &mut |n| (n == "a").then(|| "renamed".to_string()),
                DType::F32,
                &dev,
                &mut hasher,
            )
            .unwrap();
        assert_eq!(tensors.len(), 1);
        let renamed = &tensors["renamed"];
        assert_eq!(renamed.dtype(), DType::F32);
        assert_eq!(renamed.to_vec1::<f32>().unwrap(), vec![1., 2., 3.]);
        let whole = blake3::hash(&std::fs::read(&path).unwrap());
        assert_eq!(hasher.finalize(), whole);
    }

    #[test]
    fn truncated_and_inconsistent_files_name_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let t = Tensor::zeros((4, 4), DType::F32, &dev).unwrap();
        let path = write(dir.path(), &[("first", t.clone()), ("second", t)]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = SafetensorsFile::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("tensor second") && err.contains("truncated"),
            "{err}"
        );
        assert!(err.contains("w.safetensors"), "{err}");

        std::fs::write(&path, b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}").unwrap();
        let err = SafetensorsFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("malformed safetensors header"), "{err}");
    }
}
