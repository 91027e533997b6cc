//! Tensor names and shapes from a safetensors header, without reading the weights: listing
//! Stable Diffusion's modules should not read its gigabytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::engine::error::{EngineError, Result};

/// One entry of a safetensors header.
#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
}

/// The largest header accepted (safetensors itself refuses more than 100 MB).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Names and shapes of the floating-point tensors of a safetensors file, from its header.
pub(super) fn read_header_shapes(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    let bad = |what: String| EngineError::file(what, path);
    let mut file =
        std::fs::File::open(path).map_err(|e| bad(format!("cannot read weights: {e}")))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_LEN {
        return Err(bad(format!(
            "not a safetensors file (header of {len} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("not a safetensors file: truncated header ({e})")))?;
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a safetensors file: bad header ({e})")))?;
    let mut out = Vec::new();
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| bad(format!("bad header entry for tensor {name} ({e})")))?;
        if matches!(
            entry.dtype.as_str(),
            "F64" | "F32" | "F16" | "BF16" | "F8_E4M3" | "F8_E5M2"
        ) {
            out.push((name, entry.shape));
        }
    }
    Ok(out)
}
