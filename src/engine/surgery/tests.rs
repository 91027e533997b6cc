//! Unit tests of the edit arithmetic and the progressive order; tests on a whole model are in
//! `tests/surgery.rs`.

use candle_core::{Device, Tensor};

use super::edit::TensorOp;
use super::values::{Stats, fnv1a_64, needs_stats, tensor_seed};
use super::*;

/// A tensor's edited value, with the statistics `apply_edits` would give it.
fn edited_tensor(
    w: &Tensor,
    ops: &[TensorOp],
    component: &str,
    name: &str,
) -> candle_core::Result<Tensor> {
    let stats = needs_stats(ops).then(|| Stats::of_tensor(w)).transpose()?;
    values::edited_tensor(w, ops, component, name, stats)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn weight(len: usize) -> Tensor {
    let v: Vec<f32> = (0..len)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    Tensor::from_vec(v, (len / 4, 4), &Device::Cpu).unwrap()
}

#[test]
fn fnv_is_the_published_function() {
    // Test vectors of FNV-1a 64 from its authors' reference.
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    assert_ne!(
        tensor_seed(1, "unet", "conv_in.weight"),
        tensor_seed(1, "vae", "conv_in.weight")
    );
}

#[test]
fn statistics_do_not_depend_on_threads_and_match_a_direct_computation() {
    // Large enough to be split over threads.
    let w = weight(1 << 20);
    let v = values(&w);
    let stats = Stats::of(&v);
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!((stats.mean - mean).abs() < 1e-9);
    assert!((stats.std - var.sqrt()).abs() < 1e-9);
    assert_eq!(Stats::of(&v), stats);
}

#[test]
fn each_operation_follows_its_formula() {
    let w = weight(1 << 19);
    let v = values(&w);
    let stats = Stats::of(&v);

    let zero = values(&edited_tensor(&w, &[TensorOp::Zero], "unet", "x").unwrap());
    assert!(zero.iter().all(|&x| x == 0.0));

    let scaled = values(&edited_tensor(&w, &[TensorOp::Scale(1.5)], "unet", "x").unwrap());
    assert_eq!(scaled[7], v[7] * 1.5);

    // Randomized values keep the tensor's statistics.
    let random = edited_tensor(&w, &[TensorOp::Randomize { seed: 3 }], "unet", "x").unwrap();
    assert_eq!(random.dims(), w.dims());
    let r = Stats::of(&values(&random));
    assert!(
        (r.mean - stats.mean).abs() < 0.01 * stats.std,
        "{r:?} vs {stats:?}"
    );
    assert!((r.std / stats.std - 1.0).abs() < 0.01, "{r:?} vs {stats:?}");

    // Mixing: nothing at 0%, the randomized tensor at 100%, the straight line in between.
    let mix = |fraction| {
        values(&edited_tensor(&w, &[TensorOp::Mix { fraction, seed: 3 }], "unet", "x").unwrap())
    };
    assert_eq!(mix(0.0), v);
    assert_eq!(mix(1.0), values(&random));
    let half = mix(0.5);
    let rv = values(&random);
    assert!((half[11] - (0.5 * v[11] + 0.5 * rv[11])).abs() < 1e-6);

    // Another tensor name gets other noise.
    let other = edited_tensor(&w, &[TensorOp::Randomize { seed: 3 }], "unet", "y").unwrap();
    assert_ne!(values(&other), values(&random));
}

#[test]
fn operations_compose_in_order() {
    let w = weight(64);
    let v = values(&w);
    let ops = [TensorOp::Scale(2.0), TensorOp::Scale(0.25)];
    let out = values(&edited_tensor(&w, &ops, "unet", "x").unwrap());
    assert_eq!(out[5], v[5] * 0.5);
    let ops = [TensorOp::Zero, TensorOp::Scale(3.0)];
    assert!(
        values(&edited_tensor(&w, &ops, "unet", "x").unwrap())
            .iter()
            .all(|&x| x == 0.0)
    );
}

fn catalog_of(n: usize) -> ModuleCatalog {
    ModuleCatalog::from_shapes(
        Component::Unet,
        (0..n).map(|i| (format!("down_blocks.{i}.conv.weight"), vec![2])),
    )
}

#[test]
fn progressive_order_is_a_permutation_fixed_by_its_seed() {
    let catalog = catalog_of(391);
    let names = |seed| -> Vec<String> {
        progressive_order(&catalog, seed)
            .iter()
            .map(|m| m.name.clone())
            .collect()
    };
    let a = names(1);
    assert_eq!(a, names(1));
    assert_ne!(a, names(2));
    let mut sorted = a.clone();
    sorted.sort();
    let mut all: Vec<String> = catalog.modules.iter().map(|m| m.name.clone()).collect();
    all.sort();
    assert_eq!(sorted, all);
    // Pinned: the order of a recipe must never change. Update only with a new recipe version.
    assert_eq!(
        &a[..3],
        &[
            "down_blocks.381.conv".to_string(),
            "down_blocks.317.conv".into(),
            "down_blocks.132.conv".into()
        ]
    );
}

#[test]
fn noise_drawn_piece_by_piece_is_the_seeds_stream() {
    let w = weight(1 << 19);
    let stats = Stats::of(&values(&w));
    let random =
        values(&edited_tensor(&w, &[TensorOp::Randomize { seed: 5 }], "vae", "x").unwrap());
    let z = crate::engine::noise::gaussian_vec(tensor_seed(5, "vae", "x"), random.len());
    let (mean, std) = (stats.mean as f32, stats.std as f32);
    assert!(random.iter().zip(&z).all(|(&r, &z)| r == mean + std * z));
}

#[test]
fn editing_in_place_writes_the_same_values_as_editing_a_copy() {
    // Two pieces and a bit, so piece boundaries and the noise chunks behind them matter.
    let w = weight(2 * values::PIECE_LEN + 12);
    let ops = [
        TensorOp::Scale(0.75),
        TensorOp::Mix {
            fraction: 0.3,
            seed: 9,
        },
        TensorOp::Randomize { seed: 4 },
        TensorOp::Mix {
            fraction: 0.5,
            seed: 2,
        },
    ];
    for ops in [&ops[..1], &ops[..2], &ops[1..], &[TensorOp::Zero][..]] {
        let stats = needs_stats(ops).then(|| Stats::of_tensor(&w).unwrap());
        let live = w.copy().unwrap();
        assert!(values::write_edited(&w, &live, ops, "unet", "x", stats).unwrap());
        let copied = edited_tensor(&w, ops, "unet", "x").unwrap();
        assert_eq!(values(&live), values(&copied), "{ops:?}");
    }

    // Half-precision weights are not edited in place; nothing is written.
    let half = w.to_dtype(candle_core::DType::F16).unwrap();
    let live = half.copy().unwrap();
    assert!(!values::write_edited(&half, &live, &ops, "unet", "x", None).unwrap());
}
