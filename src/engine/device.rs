//! Naming the device the engine computes on: `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
//!
//! A GPU needs a build with the matching cargo feature (`--features cuda` or `metal`); asking a
//! build without it for one is an error that says how to get one, never a silent fall back to
//! the CPU.

use candle_core::Device;

use super::error::{EngineError, Result};

/// Parses a device name and opens the device.
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((kind, index)) => {
            let index = index.parse::<usize>().map_err(|_| {
                EngineError::InvalidRequest(format!(
                    "device {name}: {index} is not a device number"
                ))
            })?;
            (kind, index)
        }
        None => (name, 0),
    };
    let unavailable = |feature: &str| {
        EngineError::InvalidRequest(format!(
            "device {name}: this build has no {} support; rebuild with \
             `cargo build --release --features {feature}`, or use --device cpu",
            feature.to_uppercase()
        ))
    };
    let open_failed = |e: candle_core::Error| {
        EngineError::InvalidRequest(format!("device {name} cannot be opened: {e}"))
    };
    match kind {
        "cpu" if index == 0 => Ok(Device::Cpu),
        "cuda" if !candle_core::utils::cuda_is_available() => Err(unavailable("cuda")),
        "cuda" => Device::new_cuda(index).map_err(open_failed),
        "metal" if !candle_core::utils::metal_is_available() => Err(unavailable("metal")),
        "metal" => Device::new_metal(index).map_err(open_failed),
        _ => Err(EngineError::InvalidRequest(format!(
            "unknown device {name}: use cpu, cuda, cuda:N, metal or metal:N"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_missing_backends_say_how_to_build() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(
            parse_device("tpu")
                .unwrap_err()
                .to_string()
                .contains("unknown device tpu")
        );
        assert!(
            parse_device("cuda:x")
                .unwrap_err()
                .to_string()
                .contains("not a device number")
        );
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
