//! Surgery on a model's mind: the catalog of its modules and the edits that knock them out,
//! randomize them, scale them or drown them in noise.
//!
//! [`apply_edits`] is the one way weights change. It takes the complete list of edits that
//! should hold and makes the model's weights exactly that: tensors no longer edited get their
//! loaded values back (bit for bit), edited ones are computed afresh from the loaded values.
//! Tensors that neither list touches are never read or written, so going from one
//! experiment to the next costs only the tensors the experiments edit; a recipe's edits give
//! the same weights however the program got there; and `apply_edits(model, &[])` is a
//! complete undo.

mod catalog;
mod edit;
mod header;
mod names;
mod values;

use std::collections::{BTreeMap, BTreeSet};

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub use catalog::{GroupEntry, ModuleCatalog, ModuleGroup, ModuleInfo, TensorInfo};
pub use edit::WeightEdit;
pub use names::{module_of, network_order};
pub use values::{Stats, fnv1a_64, tensor_seed};

use super::error::{CandleContext, EngineError, Result};
use super::model::{Component, DiffusionModel};
use super::noise;
use edit::TensorOp;

/// What [`apply_edits`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditReport {
    /// Modules with at least one edited tensor.
    pub modules_edited: usize,
    /// Tensors given a newly computed value.
    pub tensors_written: usize,
    /// Tensors given back their loaded value.
    pub tensors_restored: usize,
    /// Values in the tensors written.
    pub values_written: usize,
}

/// The module catalog of a loaded model's component.
pub fn catalog(model: &DiffusionModel, component: Component) -> ModuleCatalog {
    ModuleCatalog::from_store(component, model.store(component))
}

/// The order in which [`WeightEdit::ProgressiveKnockout`] knocks out modules: the catalog's
/// modules shuffled by a Fisher-Yates shuffle driven by xoshiro256++ seeded from `seed`.
///
/// The shuffle is written out here rather than taken from `rand`, whose algorithms may change
/// between versions: a recipe's order must stay the same forever.
pub fn progressive_order(catalog: &ModuleCatalog, seed: u64) -> Vec<&ModuleInfo> {
    let mut order: Vec<&ModuleInfo> = catalog.modules.iter().collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(noise::derive_seed(seed, ORDER_STREAM));
    for i in (1..order.len()).rev() {
        // Lemire's multiply-shift maps a 64-bit draw onto 0..=i.
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// Stream index that separates the order's random draws from the noise's.
const ORDER_STREAM: u64 = 0x0048_414c_3930_3030; // "HAL9000" in ASCII

/// The operations on each tensor, per component, in edit order.
type Plan = BTreeMap<Component, BTreeMap<String, Vec<TensorOp>>>;

/// Makes the model's weights the loaded weights with exactly `edits` applied, in order.
///
/// Every edit is checked (numbers, module names, counts) before any weight changes, so a bad
/// list leaves the model as it was. Edits compose in list order on each tensor, computed from
/// the loaded values: `[ScaleAll 0.5, Knockout m]` and `[Knockout m, ScaleAll 0.5]` both leave
/// `m` at zero; the statistics `μ_w`, `σ_w` of randomization are always the loaded tensor's.
pub fn apply_edits(model: &mut DiffusionModel, edits: &[WeightEdit]) -> Result<EditReport> {
    let _span = tracing::debug_span!("apply edits", edits = edits.len()).entered();
    let plan = plan(model, edits)?;
    let mut report = EditReport::default();

    for component in Component::ALL {
        let empty = BTreeMap::new();
        let tensors = plan.get(&component).unwrap_or(&empty);
        let store = model.store_mut(component);

        // Give back what is no longer edited.
        let stale: Vec<String> = store
            .edited()
            .filter(|name| !tensors.contains_key(*name))
            .map(str::to_string)
            .collect();
        for name in &stale {
            store.restore(name)?;
        }
        report.tensors_restored += stale.len();

        // Compute and write the rest.
        let mut modules = BTreeSet::new();
        for (name, ops) in tensors {
            let original = store.original(name).ok_or_else(|| store.missing(name))?;
            let stats = if values::needs_stats(ops) {
                Some(store.loaded_stats(name, Stats::of_tensor)?)
            } else {
                None
            };
            let in_place = store.rewrite(name, |original, live| {
                values::write_edited(original, live, ops, component.name(), name, stats)
            })?;
            if !in_place {
                let value = values::edited_tensor(&original, ops, component.name(), name, stats)
                    .stage("edit weights")?;
                store.set(name, &value)?;
            }
            modules.insert(module_of(name));
            report.values_written += original.elem_count();
        }
        report.tensors_written += tensors.len();
        report.modules_edited += modules.len();
    }
    Ok(report)
}

/// Which modules of a component an edit touches.
enum Selection<'a> {
    /// A module or a group, by name.
    Named(&'a str),
    /// Every module.
    All,
    /// The first `count` modules of the progressive order of `seed`.
    Progressive { count: usize, seed: u64 },
}

/// The component, modules and tensor operation of each part of an edit.
fn targets(edit: &WeightEdit) -> Vec<(Component, Selection<'_>, TensorOp)> {
    match edit {
        WeightEdit::Knockout { component, module } => {
            vec![(*component, Selection::Named(module), TensorOp::Zero)]
        }
        WeightEdit::Randomize {
            component,
            module,
            seed,
        } => vec![(
            *component,
            Selection::Named(module),
            TensorOp::Randomize { seed: *seed },
        )],
        WeightEdit::Scale {
            component,
            module,
            factor,
        } => vec![(
            *component,
            Selection::Named(module),
            TensorOp::Scale(*factor),
        )],
        WeightEdit::MixNoise {
            percent,
            seed,
            components,
        } => unique(components)
            .into_iter()
            .map(|component| {
                let op = TensorOp::Mix {
                    fraction: percent / 100.0,
                    seed: *seed,
                };
                (component, Selection::All, op)
            })
            .collect(),
        WeightEdit::ScaleAll { factor, components } => unique(components)
            .into_iter()
            .map(|component| (component, Selection::All, TensorOp::Scale(*factor)))
            .collect(),
        WeightEdit::ProgressiveKnockout {
            count,
            seed,
            component,
        } => vec![(
            *component,
            Selection::Progressive {
                count: *count,
                seed: *seed,
            },
            TensorOp::Zero,
        )],
    }
}

/// The modules a selection picks from a catalog.
fn select<'c>(catalog: &'c ModuleCatalog, selection: &Selection) -> Result<Vec<&'c ModuleInfo>> {
    match *selection {
        Selection::Named(name) => catalog.select(name),
        Selection::All => Ok(catalog.modules.iter().collect()),
        Selection::Progressive { count, seed } => {
            if count > catalog.modules.len() {
                return Err(EngineError::InvalidRequest(format!(
                    "cannot knock out {count} modules: the {} has {}",
                    catalog.component.name(),
                    catalog.modules.len()
                )));
            }
            let mut order = progressive_order(catalog, seed);
            order.truncate(count);
            Ok(order)
        }
    }
}

/// Turns edits into per-tensor operations, checking every one.
fn plan(model: &DiffusionModel, edits: &[WeightEdit]) -> Result<Plan> {
    let mut catalogs: BTreeMap<Component, ModuleCatalog> = BTreeMap::new();
    let mut plan = Plan::new();
    for edit in edits {
        edit.validate()?;
        for (component, selection, op) in targets(edit) {
            let catalog = catalogs
                .entry(component)
                .or_insert_with(|| catalog(model, component));
            let tensors = plan.entry(component).or_default();
            for module in select(catalog, &selection)? {
                for tensor in &module.tensors {
                    tensors.entry(tensor.name.clone()).or_default().push(op);
                }
            }
        }
    }

    // What came before a knockout no longer matters.
    for ops in plan.values_mut().flat_map(BTreeMap::values_mut) {
        if let Some(last_zero) = ops.iter().rposition(|op| *op == TensorOp::Zero) {
            ops.drain(..last_zero);
        }
    }
    Ok(plan)
}

/// The components of a global edit, each once.
fn unique(components: &[Component]) -> BTreeSet<Component> {
    components.iter().copied().collect()
}

#[cfg(test)]
mod tests;
