//! Helpers for the module tests: building candle-transformers' modules from our tensors while
//! recording which names they ask for, comparing outputs, and checking that a module trains.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{AdamW, Init, Optimizer, ParamsAdamW, VarBuilder, VarMap};

/// The tensors of a `VarMap`, by name (sharing storage with the variables).
pub fn named_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect()
}

/// Adds noise to every 1-D variable (biases and norm weights start as 0 and 1, which would hide
/// a bias or norm parameter used in the wrong place).
pub fn perturb_vectors(varmap: &VarMap) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    for var in data.values().filter(|v| v.rank() == 1) {
        let noise = var.randn_like(0., 0.1)?;
        var.set(&(var.as_tensor() + noise)?)?;
    }
    Ok(())
}

/// The tensor names a module asked its `VarBuilder` for.
#[derive(Clone, Default)]
pub struct Requested(Arc<Mutex<BTreeSet<String>>>);

impl Requested {
    pub fn names(&self) -> BTreeSet<String> {
        self.0.lock().expect("requested lock").clone()
    }

    /// Asserts the recorded names are exactly the variables of `varmap`.
    pub fn assert_same_names(&self, varmap: &VarMap) {
        let ours: BTreeSet<String> = named_tensors(varmap).into_keys().collect();
        let theirs = self.names();
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "tensor names differ; only ours: {only_ours:?}; only candle-transformers': {only_theirs:?}"
        );
    }
}

/// Serves fixed tensors, fails on a missing name or a wrong shape, and records every request.
struct Recorder {
    tensors: HashMap<String, Tensor>,
    requested: Requested,
}

impl Recorder {
    fn lookup(&self, name: &str) -> Result<Tensor> {
        self.requested
            .0
            .lock()
            .expect("requested lock")
            .insert(name.to_string());
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.into() })
    }
}

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, _: &Device) -> Result<Tensor> {
        let tensor = self.lookup(name)?;
        if tensor.shape() != &s {
            candle_core::bail!(
                "{name}: requested shape {s:?}, ours is {:?}",
                tensor.shape()
            );
        }
        tensor.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> Result<Tensor> {
        self.lookup(name)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// A `VarBuilder` over `tensors` that records the names asked for.
pub fn recording_builder(tensors: HashMap<String, Tensor>) -> (VarBuilder<'static>, Requested) {
    let requested = Requested::default();
    let backend = Recorder {
        tensors,
        requested: requested.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
    (vb, requested)
}

/// Asserts `max |actual - expected| < tol`.
pub fn assert_close(actual: &Tensor, expected: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(actual.dims(), expected.dims());
    let diff = (actual - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = expected.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(
        diff < tol,
        "max abs difference {diff} >= {tol} (outputs up to {scale})"
    );
    Ok(())
}

/// Checks that one backward pass of `loss` gives every variable of `varmap` a finite, not
/// entirely zero gradient, and that a few AdamW steps at `lr` lower the loss.
pub fn assert_trains(varmap: &VarMap, lr: f64, loss: impl Fn() -> Result<Tensor>) -> Result<()> {
    let first = loss()?;
    let grads = first.backward()?;
    for (name, tensor) in named_tensors(varmap) {
        let Some(grad) = grads.get(&tensor) else {
            panic!("{name} got no gradient");
        };
        let abs_sum = grad.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(abs_sum.is_finite(), "{name} has a non-finite gradient");
        assert!(abs_sum > 0., "{name} has an all-zero gradient");
    }

    let params = ParamsAdamW {
        lr,
        weight_decay: 0.,
        ..Default::default()
    };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;
    let first = first.to_scalar::<f32>()?;
    opt.step(&grads)?;
    for _ in 0..4 {
        opt.backward_step(&loss()?)?;
    }
    let last = loss()?.to_scalar::<f32>()?;
    assert!(last < first, "loss went from {first} to {last}");
    Ok(())
}

/// Checks the backward pass against a central finite difference of `loss` along a random
/// direction in the space of all variables of `varmap` (which should hold F64 variables, for
/// precision).
pub fn assert_gradient_matches_finite_difference(
    varmap: &VarMap,
    loss: impl Fn() -> Result<Tensor>,
) -> Result<()> {
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().expect("varmap lock");
        data.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    };
    let scalar = |t: &Tensor| t.to_dtype(DType::F64)?.to_scalar::<f64>();

    // Analytic directional derivative.
    let loss_0 = loss()?;
    let grads = loss_0.backward()?;
    let mut analytic = 0.;
    let mut directions = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        let Some(grad) = grads.get(var.as_tensor()) else {
            panic!("{name} got no gradient");
        };
        let direction = var.randn_like(0., 1.)?;
        analytic += scalar(&(grad * &direction)?.sum_all()?)?;
        directions.push(direction);
    }

    // Numerical one. The step is small because a random direction over all variables moves
    // every weight at once; in F64 rounding stays far below the tolerance.
    let step = 1e-6;
    let originals = vars
        .iter()
        .map(|(_, var)| var.as_tensor().copy())
        .collect::<Result<Vec<_>>>()?;
    let loss_at = |h: f64| -> Result<f64> {
        for (((_, var), orig), dir) in vars.iter().zip(&originals).zip(&directions) {
            var.set(&(orig + (dir * h)?)?)?;
        }
        scalar(&loss()?)
    };
    let numerical = (loss_at(step)? - loss_at(-step)?) / (2. * step);
    for ((_, var), orig) in vars.iter().zip(&originals) {
        var.set(orig)?;
    }

    let error = (numerical - analytic).abs() / analytic.abs();
    assert!(
        error < 1e-4,
        "directional derivative: backward {analytic}, finite difference {numerical}"
    );
    Ok(())
}
