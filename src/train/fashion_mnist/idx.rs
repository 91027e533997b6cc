//! Reading gzipped IDX files, the format MNIST and Fashion-MNIST ship in: a big-endian header
//! (two zero bytes, a type code, the number of dimensions, one u32 per dimension) followed by
//! the raw values. Only unsigned bytes (type 0x08) occur in these data sets.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::DatasetError;

/// IDX type code of unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads and validates a gzipped IDX file of unsigned bytes.
pub fn read_idx_gz(path: &Path) -> Result<IdxArray, DatasetError> {
    let io_error = |source| DatasetError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    parse_idx(&bytes, path)
}

/// Parses the bytes of an (already decompressed) IDX file; `path` only names it in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DatasetError> {
    let format_error = |message: String| DatasetError::Format {
        path: PathBuf::from(path),
        message,
    };

    // Header: 0x00 0x00 <type> <number of dimensions>.
    let Some(&[zero_a, zero_b, type_code, num_dims]) = bytes.first_chunk::<4>() else {
        return Err(format_error(format!(
            "file is {} bytes, too short for an IDX header",
            bytes.len()
        )));
    };
    if zero_a != 0 || zero_b != 0 {
        return Err(format_error(format!(
            "bad magic number {:02x}{:02x}{type_code:02x}{num_dims:02x}, expected 0000080N",
            zero_a, zero_b
        )));
    }
    if type_code != TYPE_U8 {
        return Err(format_error(format!(
            "element type 0x{type_code:02x} is not unsigned byte (0x08)"
        )));
    }
    if num_dims == 0 {
        return Err(format_error(
            "IDX header declares zero dimensions".to_owned(),
        ));
    }

    // One big-endian u32 per dimension.
    let header_len = 4 + 4 * usize::from(num_dims);
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return Err(format_error(format!(
            "header declares {num_dims} dimensions but the file ends after {} bytes",
            bytes.len()
        )));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();

    // The body must hold exactly the product of the dimensions.
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_error(format!("dimensions {dims:?} overflow")))?;
    let body = &bytes[header_len..];
    if body.len() != expected {
        return Err(format_error(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {}",
            body.len()
        )));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Writes a gzipped IDX file of unsigned bytes; tests use it to make small data sets.
#[cfg(test)]
pub(crate) fn write_idx_gz(path: &Path, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut raw = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        raw.extend_from_slice(&(d as u32).to_be_bytes());
    }
    raw.extend_from_slice(data);
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::fast());
    encoder.write_all(&raw)?;
    encoder.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_file_round_trips() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tiny-images-idx3-ubyte.gz");
        let data: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        write_idx_gz(&path, &[2, 3, 4], &data)?;
        let array = read_idx_gz(&path)?;
        assert_eq!(array.dims, [2, 3, 4]);
        assert_eq!(array.data, data);
        Ok(())
    }

    #[test]
    fn a_truncated_gzip_stream_names_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cut-labels-idx1-ubyte.gz");
        let data: Vec<u8> = (0..4000u32).map(|v| (v * 7 % 251) as u8).collect();
        write_idx_gz(&path, &[4000], &data)?;
        let bytes = std::fs::read(&path)?;
        std::fs::write(&path, &bytes[..bytes.len() / 2])?;
        let error = read_idx_gz(&path).err().map(|e| e.to_string());
        let message = error.unwrap_or_default();
        assert!(message.contains("cut-labels-idx1-ubyte.gz"), "{message}");
        Ok(())
    }

    #[test]
    fn a_short_body_or_bad_magic_is_a_format_error() {
        let path = Path::new("broken.idx");
        let mut raw = vec![0, 0, TYPE_U8, 1, 0, 0, 0, 5, 1, 2, 3];
        let short = parse_idx(&raw, path);
        assert!(
            matches!(short, Err(DatasetError::Format { .. })),
            "{short:?}"
        );
        let message = short.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("broken.idx") && message.contains("found 3"),
            "{message}"
        );

        raw.extend_from_slice(&[4, 5]);
        assert!(parse_idx(&raw, path).is_ok());
        raw.push(6);
        assert!(
            parse_idx(&raw, path).is_err(),
            "trailing bytes must be rejected"
        );

        let bad_magic = [1, 0, TYPE_U8, 1, 0, 0, 0, 0];
        assert!(parse_idx(&bad_magic, path).is_err());
        let bad_type = [0, 0, 0x0d, 1, 0, 0, 0, 0];
        assert!(parse_idx(&bad_type, path).is_err());
        assert!(parse_idx(&[0, 0], path).is_err());
        assert!(parse_idx(&[0, 0, TYPE_U8, 3, 0, 0, 0, 1], path).is_err());
    }
}
