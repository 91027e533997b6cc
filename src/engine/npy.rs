//! NumPy `.npy` files of float32, for initial latents made elsewhere (`np.save`).
//!
//! The format: the magic `\x93NUMPY`, a version (1.0 has a 2-byte header length, 2.0 and 3.0 a
//! 4-byte one), a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 64, 64), }` padded with spaces,
//! then the values in C order. Only little-endian float32 in C order is read; anything else is
//! refused with what was found. Nothing here evaluates Python.

use std::path::Path;

use super::error::{EngineError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A float32 array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The shape, outermost first.
    pub shape: Vec<usize>,
    /// The values in C order.
    pub data: Vec<f32>,
}

impl NpyArray {
    /// BLAKE3 of the values as little-endian bytes (hex, first 16 bytes): the same array gives
    /// the same hash whatever header version it was saved with.
    pub fn hash(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for v in &self.data {
            hasher.update(&v.to_le_bytes());
        }
        hasher.finalize().to_hex()[..32].to_string()
    }
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path)
        .map_err(|e| EngineError::file(format!("cannot read noise: {e}"), path))?;
    parse_npy(&bytes).map_err(|what| EngineError::file(what, path))
}

/// Parses `.npy` bytes; the error says what is wrong.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (len_size, header_len) = match major {
        1 => (2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        _ => {
            return Err(format!(
                ".npy version {major}.{} is not supported",
                bytes[7]
            ));
        }
    };
    let start = 8 + len_size;
    let header = bytes
        .get(start..start + header_len)
        .ok_or("the .npy header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;

    let descr = dict_value(header, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim_matches(['\'', '"']);
    if descr != "<f4" {
        return Err(format!(
            "values are {descr}, expected little-endian float32 (<f4); save with \
             arr.astype('<f4')"
        ));
    }
    if dict_value(header, "fortran_order") != Some("False") {
        return Err("values are in Fortran order; save a C-ordered array".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("the .npy header has no 'shape'")?;
    let shape = shape_text
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;

    let data_bytes = &bytes[start + header_len..];
    let count: usize = shape.iter().product();
    if data_bytes.len() != count * 4 {
        return Err(format!(
            "shape {shape:?} needs {} bytes of values, the file has {}",
            count * 4,
            data_bytes.len()
        ));
    }
    let data = data_bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(NpyArray { shape, data })
}

/// The text of a value in numpy's header dict: a quoted string, a tuple, or a word.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = ["'", "\""].iter().find_map(|q| {
        header
            .find(&format!("{q}{key}{q}"))
            .map(|i| i + key.len() + 2)
    })?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = match rest.chars().next()? {
        '(' => rest.find(')')? + 1,
        q @ ('\'' | '"') => rest[1..].find(q)? + 2,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim())
}

/// Writes float32 values as a version 1.0 `.npy` file, as `np.save` does.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic, version, length and header end on a multiple of 64, with a newline last.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy(&path, &[1, 2, 3, 4], &data).unwrap();
        let read = read_npy(&path).unwrap();
        assert_eq!(read.shape, vec![1, 2, 3, 4]);
        assert_eq!(read.data, data);

        // The same array as numpy writes version 2.0 (a 4-byte header length).
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }      \n";
        let mut v2 = MAGIC.to_vec();
        v2.extend_from_slice(&[2, 0]);
        v2.extend_from_slice(&(header.len() as u32).to_le_bytes());
        v2.extend_from_slice(header.as_bytes());
        for v in [1f32, 2., 3., 4.] {
            v2.extend_from_slice(&v.to_le_bytes());
        }
        let read = parse_npy(&v2).unwrap();
        assert_eq!(read.shape, vec![4]);
        assert_eq!(read.data, vec![1., 2., 3., 4.]);
    }

    #[test]
    fn other_types_and_orders_are_refused() {
        let make = |descr: &str, order: &str| {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': (1,), }}\n");
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(&[0; 8]);
            b
        };
        assert!(
            parse_npy(&make("<f8", "False"))
                .unwrap_err()
                .contains("<f8")
        );
        assert!(
            parse_npy(&make(">f4", "False"))
                .unwrap_err()
                .contains(">f4")
        );
        assert!(
            parse_npy(&make("<f4", "True"))
                .unwrap_err()
                .contains("Fortran")
        );
        assert!(
            parse_npy(b"PK\x03\x04 a zip")
                .unwrap_err()
                .contains("magic")
        );
        let mut short = make("<f4", "False");
        short.truncate(short.len() - 5);
        assert!(parse_npy(&short).unwrap_err().contains("bytes"));
    }
}
