//! Module names: which module a tensor belongs to, and the order data flows through them.
//!
//! Checkpoints list tensors alphabetically (`down_blocks.10` before `down_blocks.2`, `conv_out`
//! before `down_blocks`); the catalog lists them as the network runs instead, so that "the
//! first module" is `conv_in` and "the last" is `conv_out`.

use std::cmp::Ordering;

/// The module a tensor belongs to: its name without `.weight` / `.bias`.
pub fn module_of(tensor_name: &str) -> &str {
    tensor_name
        .strip_suffix(".weight")
        .or_else(|| tensor_name.strip_suffix(".bias"))
        .unwrap_or(tensor_name)
}

/// A name's path segments, each list index joined to its list (`down_blocks.0`, `resnets.1`,
/// `conv1`).
pub(super) fn segments(name: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut start = 0;
    let parts: Vec<(usize, &str)> = name
        .split('.')
        .scan(0, |offset, part| {
            let at = *offset;
            *offset += part.len() + 1;
            Some((at, part))
        })
        .collect();
    for (i, (at, part)) in parts.iter().enumerate() {
        let next_is_index = parts
            .get(i + 1)
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if next_is_index {
            continue;
        }
        out.push(&name[start..at + part.len()]);
        start = at + part.len() + 1;
    }
    out
}

/// Sub-module names in the order data flows through them, across Stable Diffusion's text
/// encoder (CLIP), UNet and VAE. Siblings never appear in contradicting orders, so one list
/// serves all three.
const FLOW_ORDER: &[&str] = &[
    "text_model",
    "embeddings",
    "token_embedding",
    "position_embedding",
    "encoder",
    "quant_conv",
    "post_quant_conv",
    "decoder",
    "conv_in",
    "time_embedding",
    "linear_1",
    "linear_2",
    "add_embedding",
    "down_blocks",
    "mid_block",
    "up_blocks",
    "layers",
    "norm",
    "group_norm",
    "proj_in",
    "transformer_blocks",
    "layer_norm1",
    "self_attn",
    "norm1",
    "conv1",
    "attn1",
    "time_emb_proj",
    "layer_norm2",
    "mlp",
    "norm2",
    "conv2",
    "attn2",
    "conv_shortcut",
    "norm3",
    "ff",
    "net",
    "proj",
    "to_q",
    "q_proj",
    "query",
    "to_k",
    "k_proj",
    "key",
    "to_v",
    "v_proj",
    "value",
    "to_out",
    "out_proj",
    "proj_attn",
    "fc1",
    "fc2",
    "conv",
    "proj_out",
    "final_layer_norm",
    "conv_norm_out",
    "conv_out",
];

/// Sort key of one segment: (rank, list index, tie-break, name).
fn segment_key(segment: &str) -> (usize, u64, u8, &str) {
    let (base, index) = match segment.rsplit_once('.') {
        Some((base, index)) => (base, index.parse::<u64>().unwrap_or(0)),
        None => (segment, 0),
    };
    // Inside a block, resnet i runs before attention i, and both before the sampler.
    let block_parts = FLOW_ORDER.len();
    match base {
        "resnets" => (block_parts, index, 0, ""),
        "attentions" => (block_parts, index, 1, ""),
        "downsamplers" | "upsamplers" => (block_parts + 1, index, 0, ""),
        _ => match FLOW_ORDER.iter().position(|&known| known == base) {
            Some(rank) => (rank, index, 0, ""),
            None => (block_parts + 2, index, 0, base),
        },
    }
}

/// Compares two module names in network order.
pub fn network_order(a: &str, b: &str) -> Ordering {
    let (sa, sb) = (segments(a), segments(b));
    for (x, y) in sa.iter().zip(&sb) {
        match segment_key(x).cmp(&segment_key(y)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    sa.len().cmp(&sb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_list_indices_with_their_list() {
        assert_eq!(
            segments("down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0"),
            vec![
                "down_blocks.0",
                "attentions.1",
                "transformer_blocks.0",
                "attn1",
                "to_out.0"
            ]
        );
        assert_eq!(segments("conv_in"), vec!["conv_in"]);
    }

    #[test]
    fn network_order_runs_resnet_before_attention_and_numbers_as_numbers() {
        let mut names = vec![
            "down_blocks.0.downsamplers.0.conv",
            "down_blocks.0.attentions.0.proj_in",
            "down_blocks.0.resnets.1.conv1",
            "down_blocks.0.resnets.0.conv1",
            "down_blocks.10.resnets.0.conv1",
            "down_blocks.2.resnets.0.conv1",
        ];
        names.sort_by(|a, b| network_order(a, b));
        assert_eq!(
            names,
            vec![
                "down_blocks.0.resnets.0.conv1",
                "down_blocks.0.attentions.0.proj_in",
                "down_blocks.0.resnets.1.conv1",
                "down_blocks.0.downsamplers.0.conv",
                "down_blocks.2.resnets.0.conv1",
                "down_blocks.10.resnets.0.conv1",
            ]
        );
    }
}
