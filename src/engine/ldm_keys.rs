//! Tensor names of original Stable Diffusion checkpoints and their diffusers equivalents.
//!
//! A single-file checkpoint as A1111 and ComfyUI keep it stores the UNet under
//! `model.diffusion_model.`, the VAE under `first_stage_model.` and the text encoder under
//! `cond_stage_model.`, with the module names of the original LDM code (`input_blocks.4.1`,
//! `in_layers.2`, `decoder.up.3.block.0`, OpenCLIP's `resblocks.5.attn.in_proj_weight`). The
//! program's modules read diffusers names (`down_blocks.1.attentions.0`, `conv1`,
//! `decoder.up_blocks.0.resnets.0`, `q_proj`).
//!
//! A [`KeyMap`] is a list of [`Rule`]s: a checkpoint prefix, its diffusers prefix, and a table
//! of renames for what follows (the names inside a resnet, say). The tables are data; the code
//! generates the prefixes, whose block numbers depend on the number of levels and of resnets
//! per level. The same rules run backwards, so an error about a diffusers name can quote the
//! name the checkpoint uses, and tests can write checkpoints in the original layout.

/// Renames inside a UNet resnet (`ResBlock` in LDM, `ResnetBlock2D` in diffusers).
pub const UNET_RESNET: &[(&str, &str)] = &[
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("skip_connection.", "conv_shortcut."),
];

/// Renames inside a VAE resnet; the norms and convolutions keep their names.
pub const VAE_RESNET: &[(&str, &str)] = &[("nin_shortcut.", "conv_shortcut.")];

/// Renames inside the VAE's mid-block attention (1x1 convolutions in LDM, linears in diffusers).
pub const VAE_ATTENTION: &[(&str, &str)] = &[
    ("norm.", "group_norm."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("proj_out.", "to_out.0."),
];

/// Renames inside an OpenCLIP text transformer layer. The fused `in_proj` is split into
/// `q_proj`, `k_proj` and `v_proj` by the loader (see [`split_fused_qkv`]).
pub const OPEN_CLIP_LAYER: &[(&str, &str)] = &[
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
    ("attn.out_proj.", "self_attn.out_proj."),
    ("attn.in_proj_", "self_attn.in_proj_"),
];

/// Where each component lives in a single-file checkpoint.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// The VAE's prefix.
pub const VAE_PREFIX: &str = "first_stage_model.";
/// The SD 1.x text encoder's prefix (transformers' CLIPTextModel inside).
pub const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// The SD 2.x text encoder's prefix (OpenCLIP's model inside).
pub const OPEN_CLIP_PREFIX: &str = "cond_stage_model.model.";
/// SDXL's text encoders' prefix.
pub const SDXL_CONDITIONER_PREFIX: &str = "conditioner.embedders.";

/// One prefix and the renames that apply after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Prefix in the checkpoint.
    pub checkpoint: String,
    /// Prefix in diffusers' layout.
    pub diffusers: String,
    /// Renames of what follows the prefix, checkpoint name first.
    pub inner: &'static [(&'static str, &'static str)],
}

/// The names of one component, both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMap {
    rules: Vec<Rule>,
}

impl KeyMap {
    fn push(&mut self, checkpoint: String, diffusers: String, inner: &'static [(&str, &str)]) {
        self.rules.push(Rule {
            checkpoint,
            diffusers,
            inner,
        });
    }

    /// The rules, in the order they were made.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The diffusers name of a checkpoint tensor; `None` when no rule covers it (EMA weights,
    /// buffers, the parts of other components).
    pub fn to_diffusers(&self, name: &str) -> Option<String> {
        translate(&self.rules, name, forwards, false)
    }

    /// The checkpoint name of a diffusers tensor. A `q_proj`, `k_proj` or `v_proj` of an
    /// OpenCLIP layer comes from the fused `in_proj` tensor.
    pub fn to_checkpoint(&self, name: &str) -> Option<String> {
        let fused = unfuse_name(name).filter(|fused| {
            find_rule(&self.rules, fused, backwards)
                .is_some_and(|r| r.inner.iter().any(|&(c, _)| c == "attn.in_proj_"))
        });
        translate(
            &self.rules,
            fused.as_deref().unwrap_or(name),
            backwards,
            true,
        )
    }
}

/// A rule's prefixes, checkpoint first.
fn forwards(r: &Rule) -> (&str, &str) {
    (&r.checkpoint, &r.diffusers)
}

/// A rule's prefixes, diffusers first.
fn backwards(r: &Rule) -> (&str, &str) {
    (&r.diffusers, &r.checkpoint)
}

/// The rule with the longest prefix that `name` starts with; the first on a tie.
fn find_rule<'a>(
    rules: &'a [Rule],
    name: &str,
    sides: impl Fn(&Rule) -> (&str, &str),
) -> Option<&'a Rule> {
    // `max_by_key` keeps the last of equal keys, hence the reversal.
    rules
        .iter()
        .rev()
        .filter(|r| name.starts_with(sides(r).0))
        .max_by_key(|r| sides(r).0.len())
}

/// Applies the longest matching prefix, then the first matching inner rename.
fn translate(
    rules: &[Rule],
    name: &str,
    sides: impl Fn(&Rule) -> (&str, &str),
    backwards: bool,
) -> Option<String> {
    let rule = find_rule(rules, name, &sides)?;
    let (from, to) = sides(rule);
    let rest = &name[from.len()..];
    let inner = rule.inner.iter().find_map(|&(ckpt, diff)| {
        let (a, b) = if backwards {
            (diff, ckpt)
        } else {
            (ckpt, diff)
        };
        rest.strip_prefix(a).map(|tail| format!("{b}{tail}"))
    });
    Some(format!("{to}{}", inner.as_deref().unwrap_or(rest)))
}

/// `...self_attn.q_proj.weight` → `...self_attn.in_proj_weight` (and `k`, `v`, biases).
fn unfuse_name(name: &str) -> Option<String> {
    for proj in ["q_proj", "k_proj", "v_proj"] {
        for kind in ["weight", "bias"] {
            let suffix = format!("self_attn.{proj}.{kind}");
            if let Some(head) = name.strip_suffix(&suffix) {
                return Some(format!("{head}self_attn.in_proj_{kind}"));
            }
        }
    }
    None
}

/// The diffusers names of the three parts of a fused `self_attn.in_proj_*` tensor, in order.
pub fn split_fused_qkv(name: &str) -> Option<[String; 3]> {
    let (head, kind) = name
        .strip_suffix("self_attn.in_proj_weight")
        .map(|h| (h, "weight"))
        .or_else(|| {
            name.strip_suffix("self_attn.in_proj_bias")
                .map(|h| (h, "bias"))
        })?;
    Some(["q_proj", "k_proj", "v_proj"].map(|p| format!("{head}self_attn.{p}.{kind}")))
}

/// The shape of a UNet: levels, resnets per level, which levels have attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UNetLayout {
    /// Resnets per down level (the up levels have one more).
    pub layers_per_block: usize,
    /// Whether each down level has cross-attention, from the highest resolution down.
    pub attention: Vec<bool>,
}

/// The UNet's names.
pub fn unet_map(layout: &UNetLayout) -> KeyMap {
    let p = UNET_PREFIX;
    let n = layout.attention.len();
    let per = layout.layers_per_block + 1;
    let mut map = KeyMap::default();
    for (ckpt, diff) in [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ] {
        map.push(format!("{p}{ckpt}"), diff.to_string(), &[]);
    }
    for (b, &attention) in layout.attention.iter().enumerate() {
        for l in 0..layout.layers_per_block {
            let i = 1 + b * per + l;
            let down = format!("down_blocks.{b}");
            let block = format!("{p}input_blocks.{i}");
            map.push(
                format!("{block}.0."),
                format!("{down}.resnets.{l}."),
                UNET_RESNET,
            );
            if attention {
                map.push(
                    format!("{block}.1."),
                    format!("{down}.attentions.{l}."),
                    &[],
                );
            }
        }
        if b + 1 < n {
            let i = 1 + b * per + layout.layers_per_block;
            map.push(
                format!("{p}input_blocks.{i}.0.op."),
                format!("down_blocks.{b}.downsamplers.0.conv."),
                &[],
            );
        }
    }
    map.push(
        format!("{p}middle_block.0."),
        "mid_block.resnets.0.".into(),
        UNET_RESNET,
    );
    map.push(
        format!("{p}middle_block.1."),
        "mid_block.attentions.0.".into(),
        &[],
    );
    map.push(
        format!("{p}middle_block.2."),
        "mid_block.resnets.1.".into(),
        UNET_RESNET,
    );
    for b in 0..n {
        // Up block b mirrors down level n - 1 - b.
        let attention = layout.attention[n - 1 - b];
        let up = format!("up_blocks.{b}");
        for l in 0..per {
            let block = format!("{p}output_blocks.{}", b * per + l);
            map.push(
                format!("{block}.0."),
                format!("{up}.resnets.{l}."),
                UNET_RESNET,
            );
            if attention {
                map.push(format!("{block}.1."), format!("{up}.attentions.{l}."), &[]);
            }
            if l + 1 == per && b + 1 < n {
                let j = if attention { 2 } else { 1 };
                map.push(
                    format!("{block}.{j}.conv."),
                    format!("{up}.upsamplers.0.conv."),
                    &[],
                );
            }
        }
    }
    map
}

/// The VAE's names, for `levels` resolution levels of `layers_per_block` resnets (the decoder
/// has one more per level, and numbers its levels the other way round).
pub fn vae_map(levels: usize, layers_per_block: usize) -> KeyMap {
    let p = VAE_PREFIX;
    let mut map = KeyMap::default();
    for name in ["quant_conv.", "post_quant_conv."] {
        map.push(format!("{p}{name}"), name.to_string(), &[]);
    }
    for part in ["encoder", "decoder"] {
        for (ckpt, diff, inner) in [
            ("conv_in.", "conv_in.", &[][..]),
            ("conv_out.", "conv_out.", &[]),
            ("norm_out.", "conv_norm_out.", &[]),
            ("mid.block_1.", "mid_block.resnets.0.", VAE_RESNET),
            ("mid.block_2.", "mid_block.resnets.1.", VAE_RESNET),
            ("mid.attn_1.", "mid_block.attentions.0.", VAE_ATTENTION),
        ] {
            map.push(format!("{p}{part}.{ckpt}"), format!("{part}.{diff}"), inner);
        }
    }
    for i in 0..levels {
        let (down, ckpt) = (
            format!("encoder.down_blocks.{i}"),
            format!("{p}encoder.down.{i}"),
        );
        for j in 0..layers_per_block {
            map.push(
                format!("{ckpt}.block.{j}."),
                format!("{down}.resnets.{j}."),
                VAE_RESNET,
            );
        }
        if i + 1 < levels {
            let (from, to) = (
                format!("{ckpt}.downsample.conv."),
                format!("{down}.downsamplers.0.conv."),
            );
            map.push(from, to, &[]);
        }
        let b = levels - 1 - i;
        let (up, ckpt) = (
            format!("decoder.up_blocks.{b}"),
            format!("{p}decoder.up.{i}"),
        );
        for j in 0..=layers_per_block {
            map.push(
                format!("{ckpt}.block.{j}."),
                format!("{up}.resnets.{j}."),
                VAE_RESNET,
            );
        }
        if i > 0 {
            let (from, to) = (
                format!("{ckpt}.upsample.conv."),
                format!("{up}.upsamplers.0.conv."),
            );
            map.push(from, to, &[]);
        }
    }
    map
}

/// The SD 1.x text encoder's names: transformers' own under a prefix. Older checkpoints leave
/// out the `text_model.` level; both spellings load.
pub fn clip_map() -> KeyMap {
    let mut map = KeyMap::default();
    map.push(
        format!("{CLIP_PREFIX}text_model."),
        "text_model.".into(),
        &[],
    );
    map.push(CLIP_PREFIX.to_string(), "text_model.".into(), &[]);
    map
}

/// The SD 2.x text encoder's names. Stable Diffusion 2 conditions on the penultimate layer, so
/// of the `layers_in_checkpoint` OpenCLIP layers the last is left out, as diffusers does.
pub fn open_clip_map(layers_in_checkpoint: usize) -> KeyMap {
    let p = OPEN_CLIP_PREFIX;
    let mut map = KeyMap::default();
    let e = "text_model.embeddings.";
    map.push(
        format!("{p}token_embedding."),
        format!("{e}token_embedding."),
        &[],
    );
    map.push(
        format!("{p}positional_embedding"),
        format!("{e}position_embedding.weight"),
        &[],
    );
    map.push(
        format!("{p}ln_final."),
        "text_model.final_layer_norm.".into(),
        &[],
    );
    for i in 0..layers_in_checkpoint.saturating_sub(1) {
        map.push(
            format!("{p}transformer.resblocks.{i}."),
            format!("text_model.encoder.layers.{i}."),
            OPEN_CLIP_LAYER,
        );
    }
    map
}

#[cfg(test)]
mod tests;
