//! The shipped concept meter (`assets/meter`): it loads, and it still classifies Fashion-MNIST
//! test pictures well. Also holds the (ignored) run that regenerates it.

use std::path::Path;

use interconcept::engine::meter::ConceptMeter;
use interconcept::train::fashion_mnist::{DEFAULT_DIR, FashionMnist, Split};
use interconcept::train::meter::{MeterTrainConfig, evaluate_meter, train_meter};

const SHIPPED_METER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/meter");

#[test]
fn shipped_meter_is_accurate_on_test_pictures() -> anyhow::Result<()> {
    let meter = ConceptMeter::load(Path::new(SHIPPED_METER))?;
    assert_eq!(meter.num_classes(), 10);
    let data_dir = Path::new(DEFAULT_DIR);
    if !data_dir.is_dir() {
        eprintln!("skipping the accuracy check: {DEFAULT_DIR} is not installed");
        return Ok(());
    }
    let test = FashionMnist::load(data_dir, Split::Test)?.truncated(2000);
    let accuracy = evaluate_meter(&meter, &test)?;
    eprintln!("shipped meter accuracy on the first 2000 test pictures: {accuracy:.4}");
    assert!(accuracy >= 0.88, "accuracy {accuracy} is below 0.88");
    Ok(())
}

/// Regenerates `assets/meter`:
/// `cargo test --release --test meter -- --ignored --nocapture train_shipped_meter`.
#[test]
#[ignore = "trains for minutes and overwrites assets/meter"]
fn train_shipped_meter() -> anyhow::Result<()> {
    let cfg = MeterTrainConfig {
        out_dir: SHIPPED_METER.into(),
        progress_bar: true,
        ..MeterTrainConfig::default()
    };
    let report = train_meter(&cfg)?;
    eprintln!(
        "{} steps, training {:.1} s, total {:.1} s, test accuracy {:.4} on {} images",
        report.steps,
        report.train_seconds,
        report.total_seconds,
        report.test_accuracy,
        report.num_test_images
    );
    Ok(())
}
