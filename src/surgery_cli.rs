//! The command line of the alien-minds experiments: weight-edit flags for `generate`, and
//! `interconcept modules`, which lists what can be edited.
//!
//! A module is named as `interconcept modules` prints it (`down_blocks.0.resnets.0.conv1`); a
//! group name (`down_blocks.0`) stands for all its modules, and a `vae:` or `text_encoder:`
//! prefix picks another component than the UNet.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;

use candle_core::Device;

use crate::engine::diffusers::component_weights_path;
use crate::engine::model::{Component, DiffusionModel};
use crate::engine::surgery::{GroupEntry, ModuleCatalog, ModuleGroup, WeightEdit, catalog};

/// Weight edits for `interconcept generate`, applied in this order: module knockouts,
/// randomizations, module scales, the progressive knockout, noise, then the global scale.
#[derive(Debug, Clone, Default, Args)]
pub struct EditArgs {
    /// Knock out (zero) a module or group, e.g. down_blocks.0.resnets.0.conv1 or
    /// vae:decoder.conv_out; repeatable.
    #[arg(long, value_name = "MODULE")]
    pub knockout: Vec<String>,
    /// Replace a module's weights by noise with their own mean and spread; repeatable.
    #[arg(long, value_name = "MODULE")]
    pub randomize: Vec<String>,
    /// Seed of --randomize.
    #[arg(long, default_value_t = 0)]
    pub randomize_seed: u64,
    /// Multiply a module's weights by a factor; repeatable.
    #[arg(long, value_name = "MODULE=FACTOR")]
    pub scale: Vec<String>,
    /// Knock out this many UNet modules, in the random order of --order-seed.
    #[arg(long, value_name = "COUNT")]
    pub progressive: Option<usize>,
    /// Seed of the --progressive order.
    #[arg(long, default_value_t = 0)]
    pub order_seed: u64,
    /// Mix this percentage of randomness into every weight (0 to 100).
    #[arg(long, value_name = "PERCENT")]
    pub mix_noise: Option<f64>,
    /// Seed of --mix-noise.
    #[arg(long, default_value_t = 0)]
    pub noise_seed: u64,
    /// Multiply every weight by this factor (1.5 is 150%).
    #[arg(long, value_name = "FACTOR")]
    pub scale_all: Option<f64>,
    /// Apply --mix-noise and --scale-all to the text encoder and VAE as well as the UNet.
    #[arg(long)]
    pub all_components: bool,
}

impl EditArgs {
    /// The edits the flags ask for, checked.
    pub fn edits(&self) -> Result<Vec<WeightEdit>> {
        let mut edits = Vec::new();
        for spec in &self.knockout {
            let (component, module) = parse_module(spec)?;
            edits.push(WeightEdit::Knockout { component, module });
        }
        for spec in &self.randomize {
            let (component, module) = parse_module(spec)?;
            edits.push(WeightEdit::Randomize {
                component,
                module,
                seed: self.randomize_seed,
            });
        }
        for spec in &self.scale {
            let (module, factor) = spec
                .rsplit_once('=')
                .with_context(|| format!("--scale {spec}: expected MODULE=FACTOR"))?;
            let factor: f64 = factor
                .parse()
                .with_context(|| format!("--scale {spec}: {factor} is not a number"))?;
            let (component, module) = parse_module(module)?;
            edits.push(WeightEdit::Scale {
                component,
                module,
                factor,
            });
        }
        if let Some(count) = self.progressive {
            edits.push(WeightEdit::ProgressiveKnockout {
                count,
                seed: self.order_seed,
                component: Component::Unet,
            });
        }
        let components = if self.all_components {
            Component::ALL.to_vec()
        } else {
            vec![Component::Unet]
        };
        if let Some(percent) = self.mix_noise {
            edits.push(WeightEdit::MixNoise {
                percent,
                seed: self.noise_seed,
                components: components.clone(),
            });
        }
        if let Some(factor) = self.scale_all {
            edits.push(WeightEdit::ScaleAll { factor, components });
        }
        for edit in &edits {
            edit.validate()?;
        }
        Ok(edits)
    }
}

/// Splits `vae:decoder.conv_out` into its component and module; no prefix means the UNet.
pub fn parse_module(spec: &str) -> Result<(Component, String)> {
    let (component, module) = match spec.split_once(':') {
        Some((prefix, module)) => (parse_component(prefix).map_err(anyhow::Error::msg)?, module),
        None => (Component::Unet, spec),
    };
    if module.is_empty() {
        bail!("empty module name in {spec:?}");
    }
    Ok((component, module.to_string()))
}

/// Parses a component name for clap.
pub fn parse_component(name: &str) -> Result<Component, String> {
    Component::parse(name).ok_or_else(|| {
        let names: Vec<_> = Component::ALL.iter().map(|c| c.name()).collect();
        format!(
            "unknown component {name}; choose one of {}",
            names.join(", ")
        )
    })
}

/// `interconcept modules`.
#[derive(Debug, Args)]
pub struct ModulesArgs {
    /// Which component: unet, text_encoder or vae.
    #[arg(long, default_value = "unet", value_parser = parse_component)]
    pub component: Component,
    /// Print groups (blocks, resnets, attentions...) with their totals instead of modules.
    #[arg(long)]
    pub tree: bool,
    /// How deep the tree goes.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
}

/// Runs `interconcept modules`. Of a diffusers folder it reads only the weight file's header,
/// so it is instant even for Stable Diffusion's gigabytes; a single-file checkpoint, whose
/// names are converted on loading, is loaded on `device`.
pub fn modules(model: &Path, device: &Device, args: &ModulesArgs) -> Result<()> {
    let catalog = if model.is_dir() {
        let path = component_weights_path(model, args.component)?;
        ModuleCatalog::from_safetensors_header(args.component, &path)?
    } else {
        let loaded = DiffusionModel::load(model, device)?;
        catalog(&loaded, args.component)
    };
    let mut out = String::new();
    if args.tree {
        tree_lines(&catalog, &catalog.tree(), 0, args.depth, &mut out);
    } else {
        let width = catalog
            .modules
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        for m in &catalog.modules {
            out.push_str(&format!(
                "{:<width$}  {:<24}  {}\n",
                m.name,
                m.shapes_label(),
                m.num_params()
            ));
        }
    }
    out.push_str(&format!(
        "{} modules, {} parameters\n",
        catalog.modules.len(),
        catalog.num_params()
    ));
    print!("{out}");
    Ok(())
}

/// Appends a group's subgroups and modules, indented, down to `depth`.
fn tree_lines(
    catalog: &ModuleCatalog,
    group: &ModuleGroup,
    level: usize,
    depth: usize,
    out: &mut String,
) {
    let indent = "  ".repeat(level);
    let width = 56usize.saturating_sub(indent.len());
    for entry in &group.entries {
        match entry {
            GroupEntry::Module(index) => {
                let m = &catalog.modules[*index];
                out.push_str(&format!(
                    "{indent}{:<width$} {:>12} parameters\n",
                    m.name,
                    m.num_params()
                ));
            }
            GroupEntry::Group(child) => {
                let label = format!(
                    "{} ({} module{})",
                    child.path,
                    child.num_modules,
                    if child.num_modules == 1 { "" } else { "s" }
                );
                out.push_str(&format!(
                    "{indent}{label:<width$} {:>12} parameters\n",
                    child.num_params
                ));
                if level + 1 < depth {
                    tree_lines(catalog, child, level + 1, depth, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_edits_in_a_fixed_order() {
        let args = EditArgs {
            knockout: vec!["conv_in".into(), "vae:decoder.conv_out".into()],
            scale: vec!["mid_block=0.5".into()],
            progressive: Some(40),
            order_seed: 1,
            mix_noise: Some(2.0),
            scale_all: Some(1.5),
            ..EditArgs::default()
        };
        let edits = args.edits().unwrap();
        assert_eq!(edits.len(), 6);
        assert_eq!(
            edits[1],
            WeightEdit::Knockout {
                component: Component::Vae,
                module: "decoder.conv_out".into()
            }
        );
        assert!(matches!(edits[2], WeightEdit::Scale { factor, .. } if factor == 0.5));
        assert!(matches!(
            edits[3],
            WeightEdit::ProgressiveKnockout {
                count: 40,
                seed: 1,
                ..
            }
        ));
        assert!(matches!(edits[5], WeightEdit::ScaleAll { factor, .. } if factor == 1.5));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let bad = |args: EditArgs| args.edits().unwrap_err().to_string();
        let err = bad(EditArgs {
            scale: vec!["conv_in".into()],
            ..EditArgs::default()
        });
        assert!(err.contains("MODULE=FACTOR"), "{err}");
        let err = bad(EditArgs {
            knockout: vec!["brain:conv_in".into()],
            ..EditArgs::default()
        });
        assert!(err.contains("unknown component brain"), "{err}");
        let err = bad(EditArgs {
            mix_noise: Some(200.0),
            ..EditArgs::default()
        });
        assert!(err.contains("between 0 and 100"), "{err}");
    }
}
