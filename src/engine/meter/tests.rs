//! Tests of the meter's input rules, outputs and checkpoint loading, on untrained weights.

use candle_nn::VarMap;

use super::*;

fn untrained_meter() -> anyhow::Result<(ConceptMeter, VarMap)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let names = (0..10).map(|i| format!("class {i}")).collect();
    let meter = ConceptMeter::new(MeterConfig::new(names), vb)?;
    Ok((meter, varmap))
}

/// A batch of two pictures of side `side` with a bright square in the middle.
fn pictures(channels: usize, side: usize) -> anyhow::Result<Tensor> {
    let data: Vec<f32> = (0..2 * channels * side * side)
        .map(|i| {
            let (y, x) = ((i / side) % side, i % side);
            let inside = (side / 4..3 * side / 4).contains(&y) && (side / 3..side / 2).contains(&x);
            if inside { 0.9 } else { 0.0 }
        })
        .collect();
    Ok(Tensor::from_vec(
        data,
        (2, channels, side, side),
        &Device::Cpu,
    )?)
}

#[test]
fn input_rules_accept_28_and_multiples_of_32() -> anyhow::Result<()> {
    let (meter, _) = untrained_meter()?;
    for (channels, side) in [(3, 32), (1, 32), (3, 28), (3, 64), (1, 256)] {
        let grey = meter.grey_from_pictures(&pictures(channels, side)?)?;
        assert_eq!(grey.dims(), [2, 1, 28, 28], "{channels}x{side}x{side}");
    }
    for bad in [pictures(3, 30)?, pictures(2, 32)?, pictures(4, 32)?] {
        let error = meter.grey_from_pictures(&bad);
        assert!(
            matches!(error, Err(MeterError::Input(_))),
            "{:?}",
            bad.dims()
        );
    }
    let non_square = Tensor::zeros((1, 3, 32, 64), DType::F32, &Device::Cpu)?;
    assert!(meter.grey_from_pictures(&non_square).is_err());
    let flat = Tensor::zeros((3, 32, 32), DType::F32, &Device::Cpu)?;
    assert!(meter.probabilities(&flat).is_err());
    Ok(())
}

#[test]
fn tint_and_frame_are_removed() -> anyhow::Result<()> {
    let (meter, _) = untrained_meter()?;
    let grey_28 = Tensor::rand(0f32, 1f32, (1, 1, 28, 28), &Device::Cpu)?;
    let tint = Tensor::new(&[1.0f32, 0.3, 0.5], &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    let picture = grey_28.pad_with_zeros(2, 2, 2)?.pad_with_zeros(3, 2, 2)?;
    let tinted = picture.broadcast_mul(&tint)?;
    let grey = meter.grey_from_pictures(&tinted)?;
    let difference = (grey - &grey_28)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(difference < 1e-6, "{difference}");

    // A picture upscaled 4x by repetition comes back to the same grey image.
    let big = tinted.upsample_nearest2d(128, 128)?;
    let grey = meter.grey_from_pictures(&big)?;
    let difference = (grey - &grey_28)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(difference < 1e-5, "{difference}");
    Ok(())
}

#[test]
fn probabilities_scores_and_classes_agree() -> anyhow::Result<()> {
    let (meter, _) = untrained_meter()?;
    let batch = pictures(3, 32)?;
    let probabilities = meter.probabilities(&batch)?;
    assert_eq!(probabilities.dims(), [2, 10]);
    let sums = probabilities.sum(1)?.to_vec1::<f32>()?;
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");

    let classes = meter.classify(&batch)?;
    assert_eq!(classes.len(), 2);
    for (row, (class, p)) in probabilities.to_vec2::<f32>()?.iter().zip(&classes) {
        assert!(row.iter().all(|q| q <= p));
        assert_eq!(row[*class], *p);
    }
    let scores = meter.score(&batch, classes[0].0)?;
    assert_eq!(scores[0], classes[0].1);
    assert!(matches!(
        meter.score(&batch, 10),
        Err(MeterError::ClassOutOfRange { class: 10, .. })
    ));

    let empty = Tensor::zeros((0, 3, 32, 32), DType::F32, &Device::Cpu)?;
    assert!(meter.classify(&empty)?.is_empty());
    Ok(())
}

#[test]
fn a_saved_meter_loads_with_the_same_outputs() -> anyhow::Result<()> {
    let (meter, varmap) = untrained_meter()?;
    let dir = tempfile::tempdir()?;
    varmap.save(dir.path().join(WEIGHTS_FILE))?;
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        serde_json::to_string(meter.config())?,
    )?;
    let loaded = ConceptMeter::load(dir.path())?;
    let batch = pictures(3, 32)?;
    let difference = (meter.probabilities(&batch)? - loaded.probabilities(&batch)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert_eq!(difference, 0.0);

    // A config that disagrees with the weights is reported with the weights file.
    let mut config = meter.config().clone();
    config.hidden_size = 64;
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        serde_json::to_string(&config)?,
    )?;
    let message = ConceptMeter::load(dir.path()).err().map(|e| e.to_string());
    let message = message.unwrap_or_default();
    assert!(message.contains(WEIGHTS_FILE), "{message}");

    std::fs::remove_file(dir.path().join(CONFIG_FILE))?;
    let message = ConceptMeter::load(dir.path()).err().map(|e| e.to_string());
    assert!(message.unwrap_or_default().contains(CONFIG_FILE));
    Ok(())
}

#[test]
fn im2col_convolution_matches_candle_conv2d() -> anyhow::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let conv = Conv3x3::new(5, 7, vb)?;
    let bias = Tensor::rand(-1f32, 1f32, 7, &Device::Cpu)?;
    let conv = Conv3x3 { bias, ..conv };
    let xs = Tensor::rand(-1f32, 1f32, (2, 5, 9, 6), &Device::Cpu)?;
    let ours = conv
        .forward_nhwc(&xs.permute((0, 2, 3, 1))?)?
        .permute((0, 3, 1, 2))?;
    let theirs = xs
        .conv2d(&conv.weight, 1, 1, 1, 1)?
        .broadcast_add(&conv.bias.reshape((1, 7, 1, 1))?)?;
    let difference = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(difference < 1e-5, "{difference}");
    Ok(())
}
